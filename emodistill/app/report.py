"""Rendering of the `emodistill compare` report (`emodistill.app.compare.collect`'s dict): markdown and plots.

    write_report(report, out)   # -> out/report.md, report.json, confusion.png, accuracy_latency.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..core.utils import write_json_atomic


def _fmt(x: Any, pct: bool = False, nd: int = 2) -> str:
    if x is None:
        return "-"
    return f"{100 * x:.1f}" if pct else (f"{x:,}" if isinstance(x, int) else f"{x:.{nd}f}")


def _rtx_cell(r: dict | None) -> str:
    if not r:
        return "-"
    if "error" in r:
        return "error"
    mode = r.get("mode", "estimated")
    status = "PASS" if r.get("passed") else "FAIL"
    labels = r.get("labels") or {}
    lat, vram = labels.get("p50_ms", mode), labels.get("vram_mb", mode)
    if lat != vram:
        return (f"{r.get('latency_p50_ms', float('nan')):.2f} ms ({lat}) / {r.get('vram_mb', float('nan')):.0f} MB "
                f"({vram}), {status}")
    return f"{r.get('latency_p50_ms', float('nan')):.2f} ms / {r.get('vram_mb', float('nan')):.0f} MB ({mode}, {status})"


def plot_confusions(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = report["models"]
    names = report["data"]["class_names"]
    fig, axes = plt.subplots(1, len(models), figsize=(3.6 * len(models), 3.8), squeeze=False)
    for ax, e in zip(axes[0], models):
        cm = np.asarray(e["metrics"]["confusion"], dtype=float)
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
        ax.set_title(f"{e['name']}\nacc {100 * e['metrics']['accuracy']:.1f}%", fontsize=9)
        ax.set_xticks(range(len(names)), [c[:4] for c in names], rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), [c[:4] for c in names], fontsize=7)
        ax.set_xlabel("predicted", fontsize=8)
        for i in range(len(names)):
            for j in range(len(names)):
                if cm[i, j] >= 0.05:
                    ax.text(j, i, f"{cm[i, j]:.2f}"[1:] if cm[i, j] < 1 else "1", ha="center", va="center",
                            fontsize=6, color="white" if cm[i, j] > 0.5 else "black")
    axes[0][0].set_ylabel("true", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_latency(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for e in report["models"]:
        x, y = e["cpu_latency"]["p50_ms"], 100 * e["metrics"]["accuracy"]
        ax.scatter([x], [y], s=60)
        ax.annotate(e["name"], (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    ax.set_xscale("log")
    # plain millisecond numbers (1, 2, 3, 5, 7, 10 ...) rather than 2x10^0 on the log axis
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0, 7.0)))
    ax.xaxis.set_minor_locator(LogLocator(base=10, subs=(4.0, 6.0, 8.0, 9.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: ""))
    ax.set_xlabel("CPU latency, batch 1, median (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Accuracy vs latency (one point per model / precision)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _regime_lines(regime: dict) -> list[str]:
    """The report's first lines: what each model learned from (semi-supervised distillation or not)."""
    kd, ce, t = regime.get("student_kd"), regime.get("student_ce"), regime.get("teacher") or {}
    if not kd:
        return []
    n_t = t.get("labelled_clips")
    teacher = f"{n_t} labelled train clips" if n_t else "the labelled train split"
    if kd.get("unlabelled_clips"):
        lines = [f"**Regime: semi-supervised distillation** (label fraction {kd['label_fraction']:g}). "
                 f"Teacher: fine-tuned on {teacher}. KD student: {kd['labelled_clips']} labelled clips + "
                 f"{kd['unlabelled_clips']} unlabelled transfer clips (teacher targets only)."]
    else:
        lines = [f"**Regime: fully supervised distillation.** Teacher: fine-tuned on {teacher}. KD student: "
                 f"{kd['labelled_clips']} labelled clips (labels + teacher targets)."]
    if ce:
        lines[0] += (f" CE-only student: the same {ce['labelled_clips']} labelled clips, "
                     + (f"no unlabelled clips ({ce.get('unlabelled_available', 0)} never loaded)."
                        if ce.get("unlabelled_available") else "labels only."))
    return [*lines, ""]


def _size_line(s: dict) -> str:
    if s["compression"] > 1 and s.get("flops_ratio", 2) > 1:
        return (f"- The student is **{s['compression']:.1f}x** smaller ({s.get('flops_ratio', float('nan')):.1f}x fewer "
                f"FLOPs) and **{s['cpu_speedup']:.2f}x** as fast on this CPU.")
    return (f"- The student is NOT smaller than the teacher: {s['compression']:.2f}x the parameters ratio, "
            f"{s.get('flops_ratio', float('nan')):.2f}x the FLOPs ratio, {s['cpu_speedup']:.2f}x the CPU speed.")


def _gain_lines(s: dict, regime: dict) -> list[str]:
    """KD gain over CE-only (this run; over paired seeds when given) and what it means."""
    g, seeds = s["kd_gain_points"], s.get("kd_gain_seeds")
    line = f"- **KD gain over CE-only: {g:+.1f} points** (this seed)"
    if seeds:
        line += (f"; over {seeds['n']} paired seeds **{seeds['mean']:+.1f} ± {seeds['std']:.1f}** points, "
                 f"KD wins {seeds['kd_wins']}/{seeds['n']}")
    kd = regime.get("student_kd") or {}
    mean = seeds["mean"] if seeds else g
    if mean > 0 and kd.get("unlabelled_clips"):
        meaning = (f"the teacher's targets on {kd['unlabelled_clips']} unlabelled clips teach the student what its "
                   f"{kd['labelled_clips']} labels alone do not: distillation pays off when unlabelled footage is "
                   "plentiful and labels are scarce.")
    elif mean > 0:
        meaning = "the teacher's soft targets add to the labels (dark knowledge) on the same clips."
    else:
        meaning = ("distillation does not pay off here: the teacher knows no more than the labels already teach "
                   "the student (see the per-class recall below for where the teacher passes on its errors).")
    return [line + ".", f"- What it means: {meaning}"]


def render_markdown(report: dict) -> str:
    s = report["summary"]
    lines = ["# emodistill comparison report", "", *_regime_lines(report.get("regime") or {}),
        f"Created {report['created']} on `{report['machine']['platform']}` "
        f"({report['machine']['torch_threads']} torch threads, CUDA: {report['machine']['cuda']}). "
        f"Split `{report['data']['split']}` of `{report['data']['root']}`: {report['data']['num_samples']} clips.", "",
        "## Headline", "",
        f"- Teacher accuracy **{_fmt(s['teacher_accuracy'], True)}%**, KD student **{_fmt(s['student_accuracy'], True)}%**"
        f" = **{_fmt(s['accuracy_retained'], True)}%** of the teacher, top-1 agreement {_fmt(s['teacher_student_agreement'], True)}%.",
        _size_line(s),
    ]
    if "kd_gain_points" in s:
        lines += _gain_lines(s, report.get("regime") or {})
    lines += ["", "## Models", "",
              "| model | acc % | UAR % | WAR % | macro-F1 % | params | GFLOPs | size MB | CPU p50 / p95 ms | "
              f"RTX 3050 ({report['budget']}) |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for e in report["models"]:
        m = e["metrics"]
        lines.append(
            f"| {e['name']} | {_fmt(m['accuracy'], True)} | {_fmt(m['uar'], True)} | {_fmt(m['war'], True)} | "
            f"{_fmt(m['macro_f1'], True)} | {_fmt(e.get('params'))} | {_fmt(e.get('gflops'), nd=3)} | "
            f"{_fmt(e.get('file_mb'))} | {e['cpu_latency']['p50_ms']:.2f} / {e['cpu_latency']['p95_ms']:.2f} | "
            f"{_rtx_cell(e.get('rtx3050'))} |")
    rob = [e for e in report["models"] if "robustness" in e]
    if rob:
        lines += ["", "## Robustness (accuracy % with one modality missing)", "",
                  "| model | both | audio missing | video missing |", "|---|---|---|---|"]
        for e in rob:
            r = e["robustness"]
            lines.append(f"| {e['name']} | {_fmt(e['metrics']['accuracy'], True)} | "
                         f"{_fmt(r['audio_missing'], True)} | {_fmt(r['video_missing'], True)} |")
    exp = [e for e in report["models"] if "agreement_with_student" in e]
    if exp:
        lines += ["", "Exported artifacts agree with the PyTorch student on "
                  + ", ".join(f"{e['name']}: {_fmt(e['agreement_with_student'], True)}%" for e in exp) + " of clips."]
    trt = [e for e in report["models"] if e.get("kind") == "tensorrt"]
    if trt:
        lines += ["", "## TensorRT engines (compiled: TensorRT's own memory accounting for the target)", "",
                  "| engine | file MB | weights MB | activations MB | scratch MB | persistent MB |", "|---|---|---|---|---|---|"]
        for e in trt:
            m = e.get("compiled_memory") or {}
            lines.append(f"| {e['name']} | {_fmt(e.get('file_mb'))} | {_fmt(m.get('weights_mb'))} | "
                         f"{_fmt(m.get('activation_mb'))} | {_fmt(m.get('scratch_mb'))} | "
                         f"{_fmt(m.get('device_persistent_mb'))} |")
        lines.append("Accuracy and CPU latency of an engine row are those of the ONNX graph it was built from; "
                     "the engine runs on an NVIDIA GPU of its target only.")
    names = report["data"]["class_names"]
    lines += ["", "## Per-class recall %", "", "| model | " + " | ".join(names) + " |",
              "|---|" + "---|" * len(names)]
    for e in report["models"]:
        lines.append(f"| {e['name']} | " + " | ".join(_fmt(r, True) for r in e["metrics"]["per_class_recall"]) + " |")
    lines += ["", "## Plots", "", "![confusion matrices](confusion.png)", "",
              "![accuracy vs latency](accuracy_latency.png)", "",
              "RTX 3050 figures say whether they were *measured* on a GPU, *compiled* (TensorRT's own figures "
              "for the target) or *estimated* by the roofline model (see docs/export.md). Results on the synthetic set are not RAVDESS results.", ""]
    return "\n".join(lines)


def write_report(report: dict, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plot_confusions(report, out / "confusion.png")
    plot_accuracy_latency(report, out / "accuracy_latency.png")
    clean = {**report, "models": [{k: v for k, v in e.items() if not k.startswith("_")} for e in report["models"]]}
    write_json_atomic(out / "report.json", clean)
    (out / "report.md").write_text(render_markdown(clean))
    return out / "report.md"


__all__ = ["render_markdown", "write_report", "plot_confusions", "plot_accuracy_latency"]
