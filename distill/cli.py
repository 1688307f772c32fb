"""`emodistill distill`: the same run as `accelerate launch distill/run.py`."""

from __future__ import annotations

import argparse


def _run(args: argparse.Namespace) -> int:
    from .run import run

    return run(args)


def register(sub) -> None:
    from .run import build_parser

    p = sub.add_parser("distill", help="distill a teacher into a student (configs/distill/*.yaml)",
                       description="Distill a fine-tuned teacher into a small student from a recipe "
                                   "(configs/distill/*.yaml): KD / feature / relational losses, teacher-output cache, "
                                   "exact --resume. Multi-process: accelerate launch distill/run.py ... or torchrun "
                                   "--nproc_per_node N distill/run.py ...")
    build_parser(p)
    p.set_defaults(func=_run)
