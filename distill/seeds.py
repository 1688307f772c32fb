"""KD vs the CE-only baseline over several seeds: the distillation acceptance experiment.

    python -m distill.seeds --config configs/distill/demo.yaml --seeds 0 1 2 [--set key=value ...]

Runs the recipe as given (KD) and with `distill.kd=false` (CE-only) for each seed (student init,
data order, dropout), into `<out>/{kd,ce}_seed<N>`, then prints each run's test accuracy, the mean
and standard deviation per arm, the teacher's test accuracy and the KD mean as a fraction of it.
Runs whose metrics.json exists are reused (delete the folder to redo one).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from emodistill.config import load_config
from emodistill.utils import setup_logging, write_json_atomic

from distill.config import DistillConfig
from distill.run import train

ARMS = {"kd": [], "ce": ["distill.kd=false"]}


def run_seeds(config: str, overrides: list[str], seeds: list[int], out: Path) -> dict:
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    teacher = None
    for seed in seeds:
        for arm, extra in ARMS.items():
            folder = out / f"{arm}_seed{seed}"
            if (folder / "metrics.json").exists():
                m = json.loads((folder / "metrics.json").read_text())
            else:
                cfg = load_config(DistillConfig, config, [*overrides, *extra, f"seed={seed}", f"output_dir={folder}"])
                m = train(cfg, command=f"python -m distill.seeds {arm} seed={seed}",  # a killed arm continues
                          resume=(folder / "state" / "latest.json").exists())
            runs[arm].append({"seed": seed, "test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"],
                              "best_epoch": m["best_epoch"], "train_seconds": m["train_seconds"],
                              "epoch_seconds": statistics.mean(m["epoch_seconds"])})
            if m.get("teacher_metrics"):
                teacher = m["teacher_metrics"]["test"]["accuracy"]
    summary = {arm: {"mean": statistics.mean(r["test_accuracy"] for r in rs),
                     "std": statistics.stdev(r["test_accuracy"] for r in rs) if len(rs) > 1 else 0.0, "runs": rs}
               for arm, rs in runs.items()}
    summary["teacher_test_accuracy"] = teacher
    summary["kd_beats_ce"] = summary["kd"]["mean"] > summary["ce"]["mean"]
    summary["kd_over_teacher"] = summary["kd"]["mean"] / teacher if teacher else None
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", required=True, help="distill recipe (the KD arm; CE-only adds distill.kd=false)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds")
    p.add_argument("--out", default="runs/distill/seeds", help="folder of the runs and summary.json")
    args = p.parse_args(argv)
    setup_logging()
    s = run_seeds(args.config, args.overrides, args.seeds, Path(args.out))
    write_json_atomic(Path(args.out) / "summary.json", s)
    for arm in ARMS:
        accs = "  ".join(f"seed {r['seed']}: {r['test_accuracy']:.4f}" for r in s[arm]["runs"])
        secs = statistics.mean(r["train_seconds"] for r in s[arm]["runs"])
        print(f"{arm:3s} test acc mean {s[arm]['mean']:.4f} +- {s[arm]['std']:.4f}  ({accs}; {secs:.0f} s per run)")
    if s["teacher_test_accuracy"] is not None:
        print(f"teacher test acc {s['teacher_test_accuracy']:.4f}; KD mean = {s['kd_over_teacher']:.3f} x teacher")
    print(f"KD beats CE-only: {s['kd_beats_ce']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
