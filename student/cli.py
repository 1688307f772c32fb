"""`emodistill student info --model NAME`: parameters and GFLOPs per part (and, with --latency, ONNX Runtime CPU latency).

    emodistill student info --model student_s --latency
    emodistill student list

`--latency` exports the preset with the export stage's ONNX exporter; the export stage adds that option to
this command (export/cli.py), since a stage imports only the stages before it.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn

from emodistill.core.cli_args import add_batch_size, add_model, add_retired_positional, positional_or, retire
from emodistill.core.contract import Preprocess
from emodistill.core.flops import count_flops
from emodistill.core.inputs import Dims, random_inputs

from .model import PARTS, StudentModel, create_student, list_students


def preset_dims(model: StudentModel, num_frames: int | None = None, image_size: int | None = None,
                clip_seconds: float | None = None) -> Dims:
    """Input sizes of the preset's default preprocess (`default_preprocess`), with any size given instead."""
    pre = model.config.default_preprocess
    return Dims.from_preprocess(Preprocess(num_frames=num_frames or pre["num_frames"],
                                           image_size=image_size or pre["image_size"],
                                           clip_seconds=clip_seconds or pre["clip_seconds"],
                                           sample_rate=model.config.sample_rate))


def part_flops(model: nn.Module, video: torch.Tensor, audio: torch.Tensor) -> dict[str, float]:
    """Forward FLOPs (`emodistill.core.flops.count_flops`) of video [B,T,3,H,W], audio [B,N] per part and total."""
    flops = count_flops(model, video, audio)
    out = {p: flops.get(p, 0.0) for p in PARTS}
    for key in ("audio", "visual"):  # the unimodal heads count with the head, as their parameters do
        out["head"] += flops.get(f"unimodal.{key}", 0.0)
    out["total"] = flops["total"]
    return out


def info_model(args: argparse.Namespace) -> tuple[StudentModel, Dims]:
    """The eval-mode preset of `student info` (with its --fusion) and its input sizes (with the size options)."""
    args.name = positional_or(args, args.model, old="NAME", new="--model")
    overrides = {"fusion": args.fusion} if args.fusion else {}
    model = create_student(args.name, **overrides).eval()
    return model, preset_dims(model, args.num_frames, args.image_size, args.clip_seconds)


def print_info(args: argparse.Namespace, model: StudentModel, dims: Dims) -> None:
    video, audio = random_inputs(dims, args.batch_size)
    params = model.count_parameters()
    flops = part_flops(model, video, audio)
    print(f"{args.name}: fusion={model.config.fusion} video {tuple(video.shape)} audio {tuple(audio.shape)} "
          f"(batch {args.batch_size}); features {model.feature_dims()}")
    print(f"{'part':<8} {'params (M)':>11} {'GFLOPs':>9}")
    for part in (*PARTS, "total"):
        print(f"{part:<8} {params[part] / 1e6:>11.3f} {flops[part] / 1e9 / args.batch_size:>9.3f}")
    print("(GFLOPs per clip: torch.utils.flop_counter forward count, 2 FLOPs per multiply-add)")


def cmd_info(args: argparse.Namespace) -> int:
    print_info(args, *info_model(args))
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    for name in list_students():
        print(name)
    return 0


def register(sub) -> argparse.ArgumentParser:
    """Add `student list|info`; returns the `info` parser (the export stage adds --latency to it)."""
    from emodistill.core.cli_args import add_command_group

    _, ssub = add_command_group(
        sub, "student", help="student model presets: list, info (params, GFLOPs, latency)",
        description="Look at the student presets before training one: the registered names, and each one's "
                    "parameters, GFLOPs and (with --latency) CPU latency.")
    lp = ssub.add_parser("list", help="list registered student presets",
                         description="List the registered student presets, one name per line.")
    lp.set_defaults(func=cmd_list)
    ip = ssub.add_parser("info", help="params and GFLOPs per part (audio, video, fusion, head), optional "
                         "ONNX Runtime CPU latency",
                         description="Show a student preset's parameters and GFLOPs per part (audio, video, fusion, "
                                     "head) at its input size, without training it.")
    add_model(ip, help="student preset, e.g. student_xs or student_s (emodistill student list)")
    add_retired_positional(ip)
    ip.add_argument("--num-frames", type=int, default=None,
                    help="frames per clip (none: the preset's default_preprocess)")
    ip.add_argument("--image-size", type=int, default=None, help="frame side in pixels (none: the preset's)")
    ip.add_argument("--clip-seconds", type=float, default=None, help="audio seconds at 16 kHz (none: the preset's)")
    add_batch_size(ip, 1, help="batch size of the stand-in input")
    retire(ip, "--batch", "batch_size", "--batch-size", type=int)
    ip.add_argument("--fusion", default=None,
                    help="fusion mode instead of the preset's (lfm2, gated, film, ...; none: the preset's)")
    ip.set_defaults(func=cmd_info)
    return ip


__all__ = ["register", "preset_dims", "part_flops", "info_model", "print_info", "cmd_info"]
