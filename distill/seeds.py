"""KD vs the CE-only baseline over paired seeds, and the label-efficiency sweep.

    emodistill seeds --config configs/distill/demo.yaml --seeds 0 1 2 [--set key=value ...]
    emodistill seeds --config configs/distill/demo.yaml --label-fractions 0.1 0.25 0.5 1.0 --seeds 0 1 2 \\
        --out runs/distill/sweep

For each seed (student init, data order, dropout, which clips keep their label) it runs the recipe as
given (KD) and with `distill.kd=false` (CE-only): the two arms of a seed start from the same student
and see the same labelled clips; only the KD arm also sees the unlabelled transfer clips, through the
teacher. With `--label-fractions` it does so at each `distill.label_fraction`, into
`<out>/f<fraction>/{kd,ce}_seed<N>`, and writes `summary.json`, `table.md` and `label_efficiency.png`
(test accuracy against the labelled fraction, one line per arm with error bars over seeds, the teacher
as a horizontal line). The files are rewritten after every run, so a cut-short sweep keeps what it
finished; runs whose metrics.json exists are reused (delete the folder to redo one), and
`--existing-only` rebuilds the files from the finished runs without training. Validation
accuracy is recorded beside test accuracy: choose a recipe (the fraction) on it, report test.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from emodistill.core.config import load_config
from emodistill.core.utils import write_json_atomic

ARMS = {"kd": [], "ce": ["distill.kd=false"]}


def _mean_sd(xs: list[float]) -> dict:
    return {"mean": statistics.mean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs)}


def _run_arm(config: str, overrides: list[str], arm: str, seed: int, folder: Path,
             existing_only: bool = False) -> dict | None:
    if (folder / "metrics.json").exists():
        return json.loads((folder / "metrics.json").read_text())
    if existing_only:
        return None
    from emodistill.distill.config import DistillConfig
    from emodistill.distill.run import train

    cfg = load_config(DistillConfig, config, [*overrides, *ARMS[arm], f"seed={seed}", f"output_dir={folder}"])
    return train(cfg, command=f"emodistill seeds {arm} seed={seed} " + " ".join(overrides),
                 resume=(folder / "state" / "latest.json").exists())  # a killed arm continues


def summarize(runs: dict[str, list[dict]], teacher: dict | None) -> dict:
    """Per-arm mean and sd of test (and val) accuracy, and the paired KD gain over CE-only in points."""
    s = {arm: {**_mean_sd([r["test_accuracy"] for r in rs]), "val": _mean_sd([r["val_accuracy"] for r in rs]),
               "runs": rs} for arm, rs in runs.items() if rs}
    ce = {r["seed"]: r for r in runs.get("ce", [])}
    pairs = [(r, ce[r["seed"]]) for r in runs.get("kd", []) if r["seed"] in ce]
    if pairs:
        gains = [100 * (k["test_accuracy"] - c["test_accuracy"]) for k, c in pairs]
        s["gain_points"] = {**_mean_sd(gains), "per_seed": gains,
                            "val": _mean_sd([100 * (k["val_accuracy"] - c["val_accuracy"]) for k, c in pairs]),
                            "kd_wins": sum(g > 0 for g in gains), "pairs": len(pairs)}
    s["teacher_test_accuracy"] = teacher["test"]["accuracy"] if teacher else None
    s["teacher_val_accuracy"] = teacher["val"]["accuracy"] if teacher else None
    if "kd" in s and "ce" in s:
        s["kd_beats_ce"] = s["kd"]["mean"] > s["ce"]["mean"]
    s["kd_over_teacher"] = s["kd"]["mean"] / teacher["test"]["accuracy"] if teacher and "kd" in s else None
    first = (runs.get("kd") or runs.get("ce") or [{}])[0]
    s["regime"] = {arm: rs[0].get("regime") for arm, rs in runs.items() if rs}
    s["label_fraction"] = (first.get("regime") or {}).get("label_fraction")
    return s


def _record(m: dict) -> dict:
    return {"seed": m["seed"], "test_accuracy": m["test"]["accuracy"], "val_accuracy": m["val"]["accuracy"],
            "per_class_recall": m["test"].get("per_class_recall"), "best_epoch": m["best_epoch"],
            "train_seconds": m["train_seconds"], "epoch_seconds": statistics.mean(m["epoch_seconds"]),
            "regime": m.get("regime")}


def run_seeds(config: str, overrides: list[str], seeds: list[int], out: Path, on_run=None,
              existing_only: bool = False) -> dict:
    """Both arms at every seed into `<out>/{kd,ce}_seed<N>`; -> summarize(...). `on_run(summary)` after each run;
    `existing_only`: summarize the finished runs, train none."""
    runs: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    teacher = None
    for seed in seeds:
        for arm in ARMS:
            m = _run_arm(config, overrides, arm, seed, out / f"{arm}_seed{seed}", existing_only)
            if m is None:
                continue
            runs[arm].append(_record(m))
            teacher = m.get("teacher_metrics") or teacher
            if on_run:
                on_run(summarize(runs, teacher))
    return summarize(runs, teacher)


def _ftag(f: float) -> str:
    return f"f{f:g}"


def run_sweep(config: str, overrides: list[str], fractions: list[float], seeds: list[int], out: Path,
              existing_only: bool = False) -> dict:
    """`run_seeds` at each labelled fraction; writes summary.json, table.md and the plot after every run."""
    sweep = {"config": config, "overrides": overrides, "seeds": seeds, "fractions": {}}

    def save(tag: str, s: dict) -> None:
        sweep["fractions"][tag] = s
        write_sweep(sweep, out)

    for f in fractions:
        tag = _ftag(f)
        s = run_seeds(config, [*overrides, f"distill.label_fraction={f}"], seeds, out / tag,
                      on_run=lambda s, tag=tag: save(tag, s), existing_only=existing_only)
        if s.get("kd") or s.get("ce"):
            save(tag, s)
    return sweep


def _pm(d: dict | None, scale: float = 100.0, signed: bool = False) -> str:
    if not d:
        return "-"
    sign = "+" if signed else ""
    return f"{scale * d['mean']:{sign}.1f} ± {scale * d['std']:.1f}" if d["n"] > 1 else f"{scale * d['mean']:{sign}.1f}"


def sweep_table(sweep: dict) -> str:
    """The markdown table of a sweep: one row per labelled fraction (test accuracy %; val for choices)."""
    rows = sorted(sweep["fractions"].values(), key=lambda s: s["label_fraction"] or 0)
    teacher = next((s["teacher_test_accuracy"] for s in rows if s.get("teacher_test_accuracy")), None)
    lines = ["| labelled fraction | labelled / unlabelled train clips | seeds | CE-only test % | KD test % | "
             "KD gain (points) | KD wins | KD % of teacher | val CE-only / KD % |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in rows:
        reg = (s.get("regime") or {}).get("kd") or (s.get("regime") or {}).get("ce") or {}
        g = s.get("gain_points")
        gain = _pm(g, scale=1.0, signed=True)
        wins = f"{g['kd_wins']}/{g['pairs']}" if g else "-"
        frac_t = f"{100 * s['kd_over_teacher']:.1f}" if s.get("kd_over_teacher") else "-"
        val = f"{_pm(s.get('ce', {}).get('val'))} / {_pm(s.get('kd', {}).get('val'))}"
        seeds = sorted({r["seed"] for arm in ARMS for r in s.get(arm, {}).get("runs", [])})
        lines.append(f"| {s['label_fraction']:g} | {reg.get('labelled_clips', '-')} / {reg.get('unlabelled_available', '-')} | "
                     f"{' '.join(map(str, seeds))} | {_pm(s.get('ce'))} | {_pm(s.get('kd'))} | {gain} | {wins} | "
                     f"{frac_t} | {val} |")
    lines += ["", "Both arms of a seed share the labelled clips; only the KD arm sees the unlabelled ones (teacher "
              "targets only). KD gain: paired per seed, in points."]
    if teacher:
        lines += [f"Teacher (fine-tuned on every labelled train clip): test {100 * teacher:.1f} %."]
    return "\n".join(lines) + "\n"


def plot_sweep(sweep: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sorted(sweep["fractions"].values(), key=lambda s: s["label_fraction"] or 0)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm, label, marker in (("kd", "KD student (labelled + unlabelled via teacher)", "o"),
                               ("ce", "CE-only student (labelled only)", "s")):
        pts = [(s["label_fraction"], 100 * s[arm]["mean"], 100 * s[arm]["std"], s[arm]["n"]) for s in rows if arm in s]
        if pts:
            x, y, e, n = zip(*pts)
            ax.errorbar(x, y, yerr=e, marker=marker, capsize=4, label=label)
            for xi, yi, ni in zip(x, y, n):  # how many seeds each point averages (a sweep may be cut short)
                ax.annotate(f"n={ni}", (xi, yi), textcoords="offset points", xytext=(5, -11), fontsize=7)
    teacher = next((s["teacher_test_accuracy"] for s in rows if s.get("teacher_test_accuracy")), None)
    if teacher:
        ax.axhline(100 * teacher, color="grey", linestyle="--", label="teacher (all labels)")
    ax.set_xscale("log")
    ticks = [s["label_fraction"] for s in rows]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set_xlabel("labelled fraction of the train split")
    ax.set_ylabel("test accuracy (%)")
    n = max((s.get("gain_points", {}).get("pairs", 0) for s in rows), default=0)
    ax.set_title(f"Label efficiency (mean ± sd over up to {n} paired seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_sweep(sweep: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "summary.json", sweep)
    (out / "table.md").write_text(sweep_table(sweep))
    if any(s.get("kd") or s.get("ce") for s in sweep["fractions"].values()):
        plot_sweep(sweep, out / "label_efficiency.png")


def register(sub) -> None:
    """`emodistill seeds`: both arms over seeds (and label fractions)."""
    from emodistill.core.cli_args import add_out, add_set

    p = sub.add_parser("seeds", help="KD vs CE-only over seeds (and label fractions): the gain's spread",
                       description="Find out whether distillation pays off beyond seed noise: run the recipe with "
                                   "KD and CE-only over paired seeds (and, with --label-fractions, at each labelled "
                                   "fraction), and summarize the gain with its spread.")
    p.add_argument("--config", required=True, help="distill recipe (the KD arm; CE-only adds distill.kd=false)")
    add_set(p, help="config override for both arms (repeatable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="SEED", help="seeds")
    p.add_argument("--label-fractions", type=float, nargs="+", metavar="F",
                   help="label-efficiency sweep: run both arms at each distill.label_fraction (in this order)")
    add_out(p, default="runs/distill/seeds", help="folder of the runs and summary.json")
    p.add_argument("--existing-only", action="store_true",
                   help="train nothing: rebuild summary, table and plot from the runs already in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    bad = [f for f in args.label_fractions or [] if not 0 < f <= 1]
    if bad:
        from emodistill.core.errors import InputError

        raise InputError(f"--label-fractions must be in (0, 1]: {bad}")
    out = Path(args.out)
    if args.label_fractions:
        sweep = run_sweep(args.config, args.overrides, args.label_fractions, args.seeds, out, args.existing_only)
        print(sweep_table(sweep))
        print(f"-> {out / 'summary.json'}, {out / 'table.md'}, {out / 'label_efficiency.png'}")
        return 0
    s = run_seeds(args.config, args.overrides, args.seeds, out, existing_only=args.existing_only)
    write_json_atomic(out / "summary.json", s)
    for arm in ARMS:
        accs = "  ".join(f"seed {r['seed']}: {r['test_accuracy']:.4f}" for r in s[arm]["runs"])
        secs = statistics.mean(r["train_seconds"] for r in s[arm]["runs"])
        print(f"{arm:3s} test acc mean {s[arm]['mean']:.4f} +- {s[arm]['std']:.4f}  ({accs}; {secs:.0f} s per run)")
    g = s.get("gain_points")
    if g:
        print(f"KD gain over CE-only: {g['mean']:+.1f} +- {g['std']:.1f} points (paired; KD wins {g['kd_wins']}/{g['pairs']})")
    if s["teacher_test_accuracy"] is not None:
        print(f"teacher test acc {s['teacher_test_accuracy']:.4f}; KD mean = {s['kd_over_teacher']:.3f} x teacher")
    print(f"KD beats CE-only: {s['kd_beats_ce']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m emodistill.distill.seeds`: an alias of `emodistill seeds`."""
    from emodistill.core.cli_args import run_alias

    return run_alias(register, argv)


if __name__ == "__main__":
    sys.exit(main())
