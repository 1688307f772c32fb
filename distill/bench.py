"""Epoch-time benchmark: live teacher vs teacher-output cache vs CE-only, on one recipe.

    emodistill distill-bench --config configs/distill/demo.yaml [--epochs 2] [--set key=value ...]
    python -m emodistill.distill.bench ...     (an alias)

Runs the recipe three times for a few epochs (CE-only, cached teacher, live teacher; the cache is
filled before its run and that time is reported apart) and prints the mean train-epoch seconds of
each, without the first epoch when there are several (warm-up), and the ratio to CE-only. The
issue's target: cached <= 1.2 x CE-only.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from emodistill.core.config import load_config

from emodistill.distill.config import DistillConfig
from emodistill.distill.run import train

MODES = {"ce_only": ["distill.kd=false"], "cache": ["distill.cache=true"], "live": ["distill.cache=false"]}


def bench(config: str, overrides: list[str], epochs: int, out: Path) -> dict:
    rows = {}
    for mode, extra in MODES.items():
        sets = [*overrides, *extra, f"train.epochs={epochs}", f"output_dir={out / mode}", "train.eval_missing=false",
                "train.eval_teacher=false", f"train.patience={epochs}"]
        m = train(load_config(DistillConfig, config, sets), command=f"distill.bench {mode}")
        secs = m["epoch_seconds"][1:] if len(m["epoch_seconds"]) > 1 else m["epoch_seconds"]
        rows[mode] = {"epoch_seconds": statistics.mean(secs), "all_epochs": m["epoch_seconds"],
                      "cache_fill_seconds": m["cache"].get("fill_seconds"), "test_accuracy": m["test"]["accuracy"]}
    base = rows["ce_only"]["epoch_seconds"]
    for r in rows.values():
        r["vs_ce_only"] = r["epoch_seconds"] / base
    return rows


def register(sub) -> None:
    """`emodistill distill-bench`: train-epoch seconds of CE-only, cached teacher and live teacher."""
    from emodistill.core.cli_args import add_out, add_set

    p = sub.add_parser("distill-bench", help="epoch time: live teacher vs teacher-output cache vs CE-only",
                       description="See what the teacher costs per epoch: run a distill recipe a few epochs CE-only, "
                                   "with the teacher-output cache and with the live teacher, and print the mean "
                                   "train-epoch seconds and the ratio to CE-only.")
    p.add_argument("--config", required=True, help="distill recipe")
    add_set(p, help="config override (repeatable)")
    p.add_argument("--epochs", type=int, default=2, help="epochs per mode (the first is not timed when > 1)")
    add_out(p, default="runs/distill/bench", help="output folder of the three runs")
    p.set_defaults(func=_run)


def _run(args) -> int:
    rows = bench(args.config, args.overrides, args.epochs, Path(args.out))
    print(f"{'mode':10s} {'epoch s':>9s} {'x CE-only':>10s} {'cache fill s':>13s}")
    for mode, r in rows.items():
        fill = f"{r['cache_fill_seconds']:.1f}" if r["cache_fill_seconds"] is not None else "-"
        print(f"{mode:10s} {r['epoch_seconds']:9.2f} {r['vs_ce_only']:10.3f} {fill:>13s}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench.json").write_text(json.dumps(rows, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.distill.bench`: an alias of `emodistill distill-bench`."""
    from emodistill.core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())
