"""`emodistill compare`: teacher, students and exported artifacts side by side on one test split.

This module measures (accuracy, robustness, parameters, GFLOPs, CPU latency, RTX 3050 verdicts) into one
report dict; `emodistill.app.report` renders it: `report.md` (what a team lead reads), `report.json` (every
number, for tools) and PNG plots (confusion matrices side by side; accuracy against latency, one point per model
and precision). CPU latency is `emodistill.core.timing` (batch 1, wall clock: p50, p90, p95, mean, min in ms).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import platform
from pathlib import Path

import numpy as np
import torch

from ..core.checkpoint import load_checkpoint, read_meta, recorded_data
from ..core.contract import Preprocess
from ..core.evaluate import modality_mask
from ..core.utils import int_at_least
from ..core.flops import count_flops
from ..core.metrics import classification_metrics
from ..core.cli_args import DEFAULT_BUDGET, DEFAULT_RUNS, DEFAULT_WARMUP
from ..core.timing import time_callable
from .report import write_report

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- measuring

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
        from emodistill.export.budget import make_verdict
        from emodistill.export.profiles import load_budget
        from ..core.inputs import Dims
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
                 timing: dict, robustness: bool) -> dict:
    import emodistill.student, emodistill.teacher  # noqa: E401,F401  (register the model families load_checkpoint rebuilds)
    model, meta = load_checkpoint(ckpt, preprocess=pre)
    y_pred, y_true = _predict_torch(model, loader)
    m = classification_metrics(y_true, y_pred, num_classes)
    v = torch.rand(1, pre.num_frames, 3, pre.image_size, pre.image_size)
    a = torch.randn(1, pre.num_samples) * 0.1
    with torch.no_grad():
        lat = time_callable(lambda: model(v, a), **timing)
    entry = {
        "name": name, "role": role, "kind": "pytorch", "precision": "fp32", "path": str(ckpt),
        "metrics": {k: m[k] for k in ("accuracy", "uar", "war", "macro_f1", "per_class_recall", "confusion")},
        "params": sum(p.numel() for p in model.parameters()),
        "gflops": count_flops(model, v, a)["total"] / 1e9,
        "cpu_latency": lat,
        "_pred": y_pred, "_true": y_true,
    }
    if robustness:
        entry["robustness"] = {
            f"{miss}_missing": float((_predict_torch(model, loader, miss)[0] == y_true).mean())
            for miss in ("audio", "video")}
    entry["rtx3050"] = _rtx_verdict(model, pre, budget)
    return entry


def _onnx_entry(path: str, loader, pre: Preprocess, num_classes: int, budget: str, timing: dict) -> dict:
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
        "cpu_latency": time_callable(lambda: session.run(None, feeds), **timing),
        "rtx3050": (_verdict_summary(sidecar["budget"]["verdict"]) if "budget" in sidecar
                    else {"error": "no budget verdict in the sidecar"}),
        "_pred": y_pred, "_true": y_true,
    }


def _engine_entry(path: str, loader, pre: Preprocess, num_classes: int, budget: str, timing: dict) -> dict:
    """A TensorRT engine: its compiled memory and verdict from the sidecar; accuracy and CPU latency are those of
    the ONNX graph it was built from (the engine itself runs only on an NVIDIA GPU of its target)."""
    path = Path(path)
    sidecar = _sidecar(path)
    eng = (sidecar.get("export") or {}).get("engine") or {}
    onnx = path.parent / (sidecar.get("onnx_artifact") or {}).get("file", "model.onnx")
    entry = _onnx_entry(str(onnx), loader, pre, num_classes, budget, timing)
    mb = {k.replace("_bytes", "_mb"): v / 2**20 for k, v in (eng.get("memory") or {}).items()}
    entry.update(name=f"TensorRT {entry['precision'].upper()} ({eng.get('target', '?')})",
                 role=f"tensorrt_{entry['precision']}", kind="tensorrt", path=str(path),
                 file_mb=path.stat().st_size / 2**20, compiled_memory=mb, engine_target=eng.get("target"),
                 note="accuracy and CPU latency of the ONNX graph the engine was built from")
    return entry


def _sidecar(path: Path) -> dict:
    """The export sidecar of `path` (predict's lookup), {} when there is none or it is unreadable."""
    from .predictor import ContractError, find_sidecar

    try:
        cand = find_sidecar(path)
        return json.loads(cand.read_text())
    except ContractError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError):
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
            split: str = "test", budget: str = DEFAULT_BUDGET, runs: int = DEFAULT_RUNS, warmup: int = DEFAULT_WARMUP,
            batch_size: int = 16, protocol: str = "fixed", fold: int = 0, engines: list[str] = (),
            seeds: str | None = None) -> dict:
    """Evaluate every model on the same split and return the report dict (`seeds`: a `emodistill seeds`
    summary.json of the same recipe, for the KD gain's spread over paired seeds)."""
    from ..core.data import DataConfig, build_datasets

    _check_inputs([teacher, student, *([baseline] if baseline else [])], onnx)
    s_meta = read_meta(student)
    pre = Preprocess.model_validate(s_meta["preprocess"])
    class_names = s_meta["class_names"]
    saved = recorded_data(s_meta)  # read the data as the student's training did: layout, label map
    keep = {k: saved[k] for k in ("format", "vocal_channel", "label_map") if k in saved}
    ds = build_datasets(DataConfig(root=data, preprocess=pre, augment=False, split=protocol, fold=fold,
                                   classes=class_names, **keep))[split]
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    n = len(class_names)
    timing = {"warmup": warmup, "repeats": runs}
    entries = [_torch_entry("Teacher", "teacher", teacher, loader, pre, n, budget, timing, True),
               _torch_entry("Student (KD)", "student_kd", student, loader, pre, n, budget, timing, True)]
    if baseline:
        entries.append(_torch_entry("Student (CE only)", "student_ce", baseline, loader, pre, n, budget, timing, True))
    entries += [_onnx_entry(p, loader, pre, n, budget, timing) for p in onnx]
    entries += [_engine_entry(p, loader, pre, n, budget, timing) for p in engines]

    t, s = entries[0], entries[1]
    summary = {
        "teacher_accuracy": t["metrics"]["accuracy"],
        "student_accuracy": s["metrics"]["accuracy"],
        "accuracy_retained": s["metrics"]["accuracy"] / max(t["metrics"]["accuracy"], 1e-9),
        "teacher_student_agreement": float((t["_pred"] == s["_pred"]).mean()),
        "compression": t["params"] / max(s["params"], 1),
        "cpu_speedup": t["cpu_latency"]["p50_ms"] / max(s["cpu_latency"]["p50_ms"], 1e-9),
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


# ----------------------------------------------------------------------------- CLI

def _run(args: argparse.Namespace) -> int:
    report = collect(args.teacher, args.student, args.data, baseline=args.baseline, onnx=args.onnx or [],
                     split=args.split, budget=args.budget, runs=args.runs, warmup=args.warmup,
                     batch_size=args.batch_size, protocol=args.protocol, fold=args.fold, engines=args.engine or [],
                     seeds=args.seeds)
    path = write_report(report, args.out)
    s = report["summary"]
    print(f"report: {path}")
    print(f"teacher {100 * s['teacher_accuracy']:.1f}% | KD student {100 * s['student_accuracy']:.1f}% "
          f"({100 * s['accuracy_retained']:.1f}% of teacher)"
          + (f" | KD gain {s['kd_gain_points']:+.1f} pts" if "kd_gain_points" in s else ""))
    return 0


def register(sub) -> None:
    from ..core.cli_args import add_batch_size, add_budget, add_data, add_out, add_protocol, add_runs, retire

    p = sub.add_parser("compare", help="teacher vs student (vs baseline, ONNX, TensorRT) report",
                       description="See what distillation bought you: teacher, students and exported artifacts side "
                                   "by side on one test split (accuracy, robustness, size, CPU latency, RTX 3050 "
                                   "verdicts), as report.md, report.json and plots.")
    g = p.add_argument_group("models")
    g.add_argument("--teacher", required=True, metavar="PATH", help="teacher checkpoint folder")
    g.add_argument("--student", required=True, metavar="PATH", help="distilled student checkpoint folder")
    g.add_argument("--baseline", metavar="PATH", help="CE-only student checkpoint folder (same recipe, KD off)")
    g.add_argument("--onnx", nargs="*", metavar="PATH", help="exported .onnx files of the student (FP32, INT8, ...)")
    g.add_argument("--engine", nargs="*", metavar="PATH",
                   help="TensorRT engines of the student (model.engine with its sidecar)")
    g.add_argument("--seeds", metavar="FILE",
                   help="summary.json of `emodistill seeds` (same recipe): the KD gain's spread")
    g = p.add_argument_group("data and measurement")
    add_data(g, required=True, help="dataset root (read in the layout the student was trained on)", format_help=None)
    g.add_argument("--split", default="test", choices=["train", "val", "test"], help="which split to evaluate")
    add_protocol(g)
    add_out(g, required=True, help="folder for report.md, report.json and plots")
    add_budget(g, help="budget or hardware profile for the RTX 3050 column")
    add_runs(g, what="of each CPU latency figure (batch 1)")
    add_batch_size(g, 16, help="evaluation batch size")
    retire(p, "--data-split", "protocol", "--protocol", choices=["fixed", "fold"])
    retire(p, "--repeats", "runs", "--runs", type=int_at_least(1))
    p.set_defaults(func=_run)
