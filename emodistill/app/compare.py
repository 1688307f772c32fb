"""`emodistill compare`: teacher, students and exported artifacts side by side on one test split.

Writes `report.md` (what a team lead reads), `report.json` (every number, for tools) and PNG plots
(confusion matrices side by side; accuracy against latency, one point per model and precision).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..core.checkpoint import load_checkpoint, read_meta
from ..core.contract import Preprocess
from ..core.evaluate import modality_mask
from ..core.metrics import classification_metrics
from ..core.utils import write_json_atomic

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- measuring

def _latency(fn, repeats: int, warmup: int = 3) -> dict:
    """Median and p95 wall time of `fn()` in ms."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return {"median_ms": statistics.median(times), "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))],
            "repeats": repeats}


def _gflops(model: torch.nn.Module, video: torch.Tensor, audio: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(video, audio)
    return fc.get_total_flops() / 1e9


@torch.no_grad()
def _predict_torch(model, loader, missing=None) -> tuple[np.ndarray, np.ndarray]:
    preds, labels = [], []
    for batch in loader:
        mask = modality_mask(batch["video"].shape[0], missing)
        preds.append(model(batch["video"], batch["audio"], modality_mask=mask)["logits"].argmax(-1))
        labels.append(batch["label"])
    return torch.cat(preds).numpy(), torch.cat(labels).numpy()


def _predict_onnx(session, loader) -> tuple[np.ndarray, np.ndarray]:
    names = [i.name for i in session.get_inputs()]
    preds, labels = [], []
    for batch in loader:
        feeds = dict(zip(names, (batch["video"].numpy(), batch["audio"].numpy())))
        preds.append(session.run(None, feeds)[0].argmax(-1))
        labels.append(batch["label"].numpy())
    return np.concatenate(preds), np.concatenate(labels)


def _verdict_summary(v: dict) -> dict:
    """The few figures a report shows from an export-stage verdict (export.budget.Verdict.to_dict())."""
    f = v["figures"]
    return {"mode": v["method"], "passed": v["passed"], "latency_p50_ms": f["p50_ms"], "latency_p95_ms": f["p95_ms"],
            "vram_mb": f["vram_mb"], "budget": v["budget"], "profile": v["profile"], "precision": v["precision"],
            "batch_size": v["batch_size"], "device": v["device"], "labels": v.get("labels") or {}}


def _rtx_verdict(model: torch.nn.Module, pre: Preprocess, budget: str, precision: str = "fp16") -> dict | None:
    """RTX 3050 figures from the export stage's budget checker (measured with CUDA, estimated without)."""
    try:
        from export.budget import make_verdict
        from export.onnx import Dims
        from export.profiles import load_budget
    except ImportError:  # export stage not installed in this checkout
        return None
    b, profile = load_budget(budget)
    errors = []
    # a model built for mixed precision (the teacher keeps its projections fp32) may not run as a whole-fp16
    # copy; its fp32 figures are then reported, labelled fp32
    for prec in dict.fromkeys([precision, "fp32"]):
        try:
            return _verdict_summary(make_verdict(model, Dims.from_preprocess(pre), b, profile, prec).to_dict())
        except Exception as e:  # one failed estimate must not lose the whole report
            errors.append(f"{prec}: {type(e).__name__}: {e}")
            logger.warning("RTX 3050 verdict at %s failed for %s: %s", prec, type(model).__name__, e)
    return {"error": "; ".join(errors)}


# ----------------------------------------------------------------------------- collecting

def _torch_entry(name: str, role: str, ckpt: str, loader, pre: Preprocess, num_classes: int, budget: str,
                 repeats: int, robustness: bool) -> dict:
    import student, teacher  # noqa: E401,F401  (register the model families load_checkpoint rebuilds)
    model, meta = load_checkpoint(ckpt, preprocess=pre)
    y_pred, y_true = _predict_torch(model, loader)
    m = classification_metrics(y_true, y_pred, num_classes)
    v = torch.rand(1, pre.num_frames, 3, pre.image_size, pre.image_size)
    a = torch.randn(1, pre.num_samples) * 0.1
    with torch.no_grad():
        lat = _latency(lambda: model(v, a), repeats)
    entry = {
        "name": name, "role": role, "kind": "pytorch", "precision": "fp32", "path": str(ckpt),
        "metrics": {k: m[k] for k in ("accuracy", "uar", "war", "macro_f1", "per_class_recall", "confusion")},
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": _gflops(model, v, a),
        "cpu_latency": lat,
        "_pred": y_pred, "_true": y_true,
    }
    if robustness:
        entry["robustness"] = {
            f"{miss}_missing": float((_predict_torch(model, loader, miss)[0] == y_true).mean())
            for miss in ("audio", "video")}
    entry["rtx3050"] = _rtx_verdict(model, pre, budget)
    return entry


def _onnx_entry(path: str, loader, pre: Preprocess, num_classes: int, budget: str, repeats: int) -> dict:
    import onnxruntime as ort

    path = Path(path)
    sidecar = _sidecar(path)
    precision = sidecar.get("precision", "int8" if "int8" in path.name else "fp32")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    y_pred, y_true = _predict_onnx(session, loader)
    m = classification_metrics(y_true, y_pred, num_classes)
    names = [i.name for i in session.get_inputs()]
    feeds = dict(zip(names, (np.random.rand(1, pre.num_frames, 3, pre.image_size, pre.image_size).astype(np.float32),
                             (np.random.randn(1, pre.num_samples) * 0.1).astype(np.float32))))
    return {
        "name": f"ONNX {precision.upper()}", "role": f"onnx_{precision}", "kind": "onnxruntime",
        "precision": precision, "path": str(path),
        "metrics": {k: m[k] for k in ("accuracy", "uar", "war", "macro_f1", "per_class_recall", "confusion")},
        "file_mb": path.stat().st_size / 2**20,
        "cpu_latency": _latency(lambda: session.run(None, feeds), repeats),
        "rtx3050": (_verdict_summary(sidecar["budget"]["verdict"]) if "budget" in sidecar
                    else {"error": "no budget verdict in the sidecar"}),
        "_pred": y_pred, "_true": y_true,
    }


def _engine_entry(path: str, loader, pre: Preprocess, num_classes: int, budget: str, repeats: int) -> dict:
    """A TensorRT engine: its compiled memory and verdict from the sidecar; accuracy and CPU latency are those of
    the ONNX graph it was built from (the engine itself runs only on an NVIDIA GPU of its target)."""
    path = Path(path)
    sidecar = _sidecar(path)
    eng = (sidecar.get("export") or {}).get("engine") or {}
    onnx = path.parent / (sidecar.get("onnx_artifact") or {}).get("file", "model.onnx")
    entry = _onnx_entry(str(onnx), loader, pre, num_classes, budget, repeats)
    mb = {k.replace("_bytes", "_mb"): v / 2**20 for k, v in (eng.get("memory") or {}).items()}
    entry.update(name=f"TensorRT {entry['precision'].upper()} ({eng.get('target', '?')})",
                 role=f"tensorrt_{entry['precision']}", kind="tensorrt", path=str(path),
                 file_mb=path.stat().st_size / 2**20, compiled_memory=mb, engine_target=eng.get("target"),
                 note="accuracy and CPU latency of the ONNX graph the engine was built from")
    return entry


def _sidecar(path: Path) -> dict:
    for cand in (path.with_suffix(".json"), path.parent / "sidecar.json"):
        if cand.exists():
            try:
                return json.loads(cand.read_text())
            except json.JSONDecodeError:
                logger.warning("unreadable sidecar %s", cand)
    return {}


def _regime(teacher: str, student: str, baseline: str | None) -> dict:
    """How many labelled / unlabelled train clips each model learned from (from the checkpoints' metadata)."""
    t_meta = read_meta(teacher)
    out = {"teacher": {"labelled_clips": t_meta.get("train_clips"), "unlabelled_clips": 0}}
    for role, ckpt in (("student_kd", student), ("student_ce", baseline)):
        if ckpt:
            out[role] = (read_meta(ckpt).get("distill") or {}).get("regime")
    return out


def _check_inputs(checkpoints: list[str], onnx_files) -> None:
    """Every model file readable before the data is decoded (an error names the file)."""
    import onnx as onnx_lib

    for ckpt in checkpoints:
        read_meta(ckpt)
    for p in onnx_files:
        if not Path(p).is_file():
            raise FileNotFoundError(f"--onnx {p}: file not found")
        try:
            onnx_lib.load(str(p), load_external_data=False)
        except Exception as e:  # protobuf DecodeError: a text file or a truncated download
            raise ValueError(f"--onnx {p}: not a readable ONNX model ({type(e).__name__}); export it again") from None


def collect(teacher: str, student: str, data: str, baseline: str | None = None, onnx: list[str] = (),
            split: str = "test", budget: str = "rtx3050-laptop-4gb", repeats: int = 20, batch_size: int = 16,
            data_split: str = "fixed", fold: int = 0, engines: list[str] = (), seeds: str | None = None) -> dict:
    """Evaluate every model on the same split and return the report dict (`seeds`: a `python -m distill.seeds`
    summary.json of the same recipe, for the KD gain's spread over paired seeds)."""
    from ..core.data import DataConfig, build_datasets

    _check_inputs([teacher, student, *([baseline] if baseline else [])], onnx)
    s_meta = read_meta(student)
    pre = Preprocess.model_validate(s_meta["preprocess"])
    class_names = s_meta["class_names"]
    ds = build_datasets(DataConfig(root=data, preprocess=pre, augment=False, split=data_split, fold=fold))[split]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    n = len(class_names)
    entries = [_torch_entry("Teacher", "teacher", teacher, loader, pre, n, budget, repeats, True),
               _torch_entry("Student (KD)", "student_kd", student, loader, pre, n, budget, repeats, True)]
    if baseline:
        entries.append(_torch_entry("Student (CE only)", "student_ce", baseline, loader, pre, n, budget, repeats, True))
    entries += [_onnx_entry(p, loader, pre, n, budget, repeats) for p in onnx]
    entries += [_engine_entry(p, loader, pre, n, budget, repeats) for p in engines]

    t, s = entries[0], entries[1]
    summary = {
        "teacher_accuracy": t["metrics"]["accuracy"],
        "student_accuracy": s["metrics"]["accuracy"],
        "accuracy_retained": s["metrics"]["accuracy"] / max(t["metrics"]["accuracy"], 1e-9),
        "teacher_student_agreement": float((t["_pred"] == s["_pred"]).mean()),
        "compression": t["params"] / max(s["params"], 1),
        "cpu_speedup": t["cpu_latency"]["median_ms"] / max(s["cpu_latency"]["median_ms"], 1e-9),
    }
    if baseline:
        summary["kd_gain_points"] = 100 * (s["metrics"]["accuracy"] - entries[2]["metrics"]["accuracy"])
    summary["flops_ratio"] = t["gflops"] / max(s["gflops"], 1e-12)
    if seeds:
        g = json.loads(Path(seeds).read_text()).get("gain_points")
        if g:
            summary["kd_gain_seeds"] = {k: g[k] for k in ("mean", "std", "n", "kd_wins", "per_seed")}
    for e in entries[3:]:
        e["agreement_with_student"] = float((e["_pred"] == s["_pred"]).mean())
    return {
        "regime": _regime(teacher, student, baseline),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()},
        "data": {"root": str(data), "split": split, "num_samples": len(ds), "class_names": class_names,
                 "preprocess": pre.model_dump(mode="json")},
        "budget": budget,
        "summary": summary,
        "models": entries,
    }


# ----------------------------------------------------------------------------- rendering

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
        x, y = e["cpu_latency"]["median_ms"], 100 * e["metrics"]["accuracy"]
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
            f"{_fmt(e.get('file_mb'))} | {e['cpu_latency']['median_ms']:.2f} / {e['cpu_latency']['p95_ms']:.2f} | "
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


# ----------------------------------------------------------------------------- CLI

def _run(args: argparse.Namespace) -> int:
    report = collect(args.teacher, args.student, args.data, baseline=args.baseline, onnx=args.onnx or [],
                     split=args.split, budget=args.budget, repeats=args.repeats, batch_size=args.batch_size,
                     data_split=args.data_split, fold=args.fold, engines=args.engine or [], seeds=args.seeds)
    path = write_report(report, args.out)
    s = report["summary"]
    print(f"report: {path}")
    print(f"teacher {100 * s['teacher_accuracy']:.1f}% | KD student {100 * s['student_accuracy']:.1f}% "
          f"({100 * s['accuracy_retained']:.1f}% of teacher)"
          + (f" | KD gain {s['kd_gain_points']:+.1f} pts" if "kd_gain_points" in s else ""))
    return 0


def register(sub) -> None:
    p = sub.add_parser("compare", help="teacher vs student (vs baseline, ONNX, TensorRT) report",
                       description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--teacher", required=True, help="teacher checkpoint folder")
    p.add_argument("--student", required=True, help="distilled student checkpoint folder")
    p.add_argument("--baseline", help="CE-only student checkpoint folder (same recipe, KD off)")
    p.add_argument("--onnx", nargs="*", help="exported .onnx files of the student (FP32, INT8, ...)")
    p.add_argument("--engine", nargs="*", help="TensorRT engines of the student (model.engine with its sidecar)")
    p.add_argument("--data", required=True, help="dataset root (same format the models were trained on)")
    p.add_argument("--out", required=True, help="folder for report.md, report.json and plots")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to evaluate")
    p.add_argument("--data-split", default="fixed", choices=["fixed", "fold"], help="actor split protocol")
    p.add_argument("--fold", type=int, default=0, help="fold for --data-split fold (0-5)")
    p.add_argument("--budget", default="rtx3050-laptop-4gb", help="hardware profile or budget for the RTX 3050 column")
    p.add_argument("--repeats", type=int, default=20, help="timed repeats per latency figure")
    p.add_argument("--batch-size", type=int, default=16, help="evaluation batch size")
    p.add_argument("--seeds", help="summary.json of `python -m distill.seeds` (same recipe): the KD gain's spread")
    p.set_defaults(func=_run)
