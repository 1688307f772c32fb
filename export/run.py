"""`emodistill export`: checkpoint -> ONNX (fp32/fp16/int8) or TensorRT engine + sidecar + budget verdict.

    emodistill export --model runs/distill/student_s --format onnx --precision int8 \
        --budget rtx3050-laptop-4gb-realtime --data data/synth --out exports/student_s-int8
    python export/run.py ...   (same options)

Writes into --out: the artifact (`model.onnx` or `model.engine`), `model.json` (the sidecar: input contract,
precision, versions, sha256 of the artifact, parity/accuracy/latency, budget verdict) and `verdict.txt`.
Exit codes (emodistill.core.errors): 0 ok, 1 runtime failure, 2 input error (bad checkpoint, flag, budget name, an --out
that holds an export without --force; --out is left as it was), 3 budget exceeded (the table says which figure and
by how much), 4 parity or accuracy outside tolerance, 5 TensorRT path unavailable
(torch-tensorrt backend without torch-tensorrt / GPU).
With --force the previous export in --out is replaced only once the new one is complete (it is built in a staging
folder inside --out).

TensorRT backends (`--trt-backend`):
  rtx             default. TensorRT for RTX (`tensorrt_rtx`, a default dependency): the verified ONNX artifact
                  (`model.onnx`, written beside the engine) is compiled ahead of time for the compute capability
                  of the budget's hardware profile (8.6 for every RTX 3050), on any machine, with or without a
                  GPU. GeForce RTX / RTX PRO targets only (SM 7.5, 8.0, 8.6, 8.9, 12.0, 12.1).
  torch-tensorrt  torch-tensorrt on the GPU that will run the engine (needs that GPU): `torch-tensorrt-rtx`
                  (the `[tensorrt]` extra) on an RTX machine, standard `torch-tensorrt` on data-center GPUs
                  (A100, H100/H200: SM 8.0/9.0, which TensorRT for RTX does not target or has no SM90).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __name__ == "__main__" and not __package__:  # a checkout's `python export/run.py`
    import runpy  # run the package module, with the repository (not this folder: its onnx.py, data.py...) first
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    runpy.run_module("emodistill.export.run", run_name="__main__", alter_sys=True)
    raise SystemExit(0)

import argparse  # noqa: E402
import datetime as _dt  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emodistill.core.utils import float_above, int_at_least  # noqa: E402

logger = logging.getLogger("emodistill.export.run")

EXIT_OK, EXIT_ERROR, EXIT_BUDGET, EXIT_PARITY, EXIT_UNAVAILABLE = 0, 1, 3, 4, 5  # = emodistill.core.errors
ARTIFACT_NAMES = {"onnx": "model.onnx", "tensorrt": "model.engine"}
SIDECAR, VERDICT_TXT = "model.json", "verdict.txt"


def _budget_override(item: str) -> str:
    return f"budget.{item}"


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """The export options in groups of a few (docs/cli.md: the shared flags come from emodistill.core.cli_args)."""
    from emodistill.core.cli_args import (add_batch_size, add_budget, add_data, add_model, add_out, add_runs, add_set,
                                          add_threads, retire)

    g = p.add_argument_group("what to export")
    add_model(g, required=True, help="checkpoint folder (or its model.safetensors)")
    g.add_argument("--format", choices=["onnx", "tensorrt"], default="onnx", help="artifact kind")
    g.add_argument("--precision", choices=["fp32", "fp16", "int8"], default="fp32", help="artifact precision")
    add_out(g, required=True)
    g.add_argument("--force", action="store_true", help="overwrite an existing artifact in --out")
    g.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                   help="reuse this fp32 ONNX export of the same checkpoint (checked by its sidecar) instead of "
                        "exporting again; for fp32 and int8 (quantized here), fp16 always exports")
    g = p.add_argument_group("budget check")
    add_budget(g)
    add_set(g, help="override a budget field: --set budget.max_p95_ms=20, --set budget.batch_size=16 (repeatable)")
    g.add_argument("--verdict", choices=["auto", "estimated", "measured"], default="auto",
                   help="auto: measured when CUDA is visible, else the roofline estimate")
    add_runs(g, what="of each latency figure (ONNX Runtime on CPU; a measured GPU verdict also runs >= 10 s)")
    add_threads(g, help="ONNX Runtime CPU intra-op threads for the latency figure")
    g = p.add_argument_group("data (parity, calibration, accuracy)")
    add_data(g, help="dataset root: real clips for parity, calibration (train split) and accuracy (test split); "
                     "none: parity on random inputs, no accuracy",
             format_help="dataset layout (none: the one the checkpoint was trained on, else ravdess)")
    add_batch_size(g, 16, help="batch size for parity and accuracy")
    g.add_argument("--max-eval", type=int_at_least(0), default=0, help="test clips used for accuracy (0 = all)")
    g.add_argument("--parity-samples", type=int_at_least(1), default=32, help="clips for the PyTorch parity check")
    g.add_argument("--max-accuracy-drop", type=float_above(0, inclusive=True), default=1.0,
                   help="largest accuracy drop (points) vs the fp32 PyTorch model on the test split")
    g = p.add_argument_group("INT8")
    g.add_argument("--int8-mode", choices=["static", "dynamic"], default="static", help="ONNX INT8 method")
    g.add_argument("--int8-target", choices=["cpu", "tensorrt"], default=None,
                   help="cpu: uint8 asymmetric activations (ORT); tensorrt: symmetric int8 activations and weights, "
                        "float biases (none: tensorrt for --format tensorrt, else cpu)")
    g.add_argument("--calib-samples", type=int_at_least(1), default=64, help="training clips used for INT8 calibration")
    g.add_argument("--calibrate-method", choices=["minmax", "entropy", "percentile"], default="minmax",
                   help="activation range calibration")
    g = p.add_argument_group("TensorRT")
    g.add_argument("--trt-backend", choices=["rtx", "torch-tensorrt"], default="rtx",
                   help="rtx: TensorRT for RTX builds the engine ahead of time from the verified ONNX for the budget "
                        "profile's compute capability (GeForce RTX, e.g. every RTX 3050 = SM 8.6), on any machine, no "
                        "GPU needed. torch-tensorrt: builds on the GPU that runs it - torch-tensorrt-rtx ([tensorrt] "
                        "extra) on RTX GPUs, standard torch-tensorrt on data-center GPUs (A100/H100/H200)")
    g.add_argument("--max-batch", type=int_at_least(1), default=16,
                   help="largest batch of the TensorRT optimisation profile (min 1, opt = budget batch, max = the "
                        "larger of this and the budget batch; compiled activation memory is for this batch)")
    g.add_argument("--hardware-compatible", action="store_true",
                   help="TensorRT engine that runs on any Ampere+ GPU (slightly slower)")
    retire(p, "--checkpoint", "model", "--model")
    retire(p, "--budget-set", "overrides", "--set budget.KEY=VALUE", convert=_budget_override, append=True)
    retire(p, "--eval-batch", "batch_size", "--batch-size", type=int_at_least(1))
    retire(p, "--latency-seconds", "latency_seconds", "--runs / --warmup", type=float_above(0))
    retire(p, "--measure-seconds", "measure_seconds", "--runs", type=float_above(0))


def budget_overrides(args) -> list[str]:
    """The budget fields of `--set budget.KEY=VALUE` (export's only --set section), as KEY=VALUE."""
    from emodistill.core.errors import InputError

    out = []
    for item in args.overrides:
        key = item.split("=", 1)[0].strip()
        if not key.startswith("budget.") or key == "budget.":
            raise InputError(f"--set {item}: export's --set takes budget fields only, e.g. --set budget.max_p50_ms=8")
        out.append(item[len("budget."):])
    return out


def _resolve_args(args) -> None:
    """What the options mean for this export, resolved once: the budget's --set fields, the timing of the CPU
    latency figure (--runs/--warmup, or a retired --latency-seconds) and of a measured verdict (>= 10 s)."""
    args.budget_set = budget_overrides(args)
    args.latency_kw = ({"seconds": args.latency_seconds} if getattr(args, "latency_seconds", None) else
                       {"seconds": 0.0, "warmup": args.warmup, "min_runs": args.runs, "max_runs": args.runs})
    args.measure_seconds = max(getattr(args, "measure_seconds", None) or 10.0, 10.0)


@dataclass
class Clips:
    """Batches for parity, calibration and accuracy; `real` says whether they come from a dataset."""

    parity: list[dict]
    calib: list[dict]
    test: list[dict] | None
    real: bool
    source: str


def _batches(ds, batch: int, limit: int = 0) -> list[dict]:
    idx = list(range(len(ds)))
    if limit and limit < len(idx):  # evenly spread: covers actors and classes, deterministic
        idx = [int(i) for i in np.linspace(0, len(ds) - 1, limit).round()]
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=batch, shuffle=False)
    return [{"video": b["video"], "audio": b["audio"], "label": b["label"]} for b in loader]


def load_clips(args, meta: dict, dims) -> Clips:
    from .wrappers import random_inputs

    if not args.data:
        parity = [dict(zip(("video", "audio"), random_inputs(dims, min(args.batch_size, args.parity_samples), s)))
                  for s in range(max(1, args.parity_samples // max(1, args.batch_size)))]
        return Clips(parity, parity, None, False, "random inputs (no --data)")
    try:
        from emodistill.core.data import DataConfig, build_datasets
    except ImportError as e:
        raise RuntimeError(f"--data needs the data layer (emodistill.core.data): {e}") from e
    from emodistill.core.checkpoint import recorded_data

    saved = recorded_data(meta)  # the layout, split and label map the model was trained with
    keep = {k: saved[k] for k in ("format", "split", "fold", "vocal_channel", "seed", "label_map") if k in saved}
    if args.data_format:
        keep["format"] = args.data_format
    # labels indexed the way the model's head is, whatever else the folder holds
    cfg = DataConfig(root=args.data, preprocess=meta["preprocess"], augment=False, num_views=1,
                     classes=meta["class_names"], **keep)
    ds = build_datasets(cfg)
    test = _batches(ds["test"], args.batch_size, args.max_eval)
    if not test:
        raise ValueError(f"{args.data}: the test split is empty")
    parity = _batches(ds["test"], args.batch_size, args.parity_samples)
    calib = _batches(ds["train"], args.batch_size, args.calib_samples)
    return Clips(parity, calib, test, True, f"{args.data} ({cfg.format}, test={len(ds['test'])}, "
                                            f"train={len(ds['train'])})")


def contract_for(meta: dict, dims, precision: str) -> dict:
    from emodistill.core.contract import Preprocess, input_contract

    pre = Preprocess.model_validate(meta["preprocess"])
    classes = list(meta["class_names"])
    base = meta.get("contract") or input_contract(pre, classes)
    return {
        **base,
        "inputs": [{"name": "video", "shape": ["batch", dims.num_frames, 3, dims.image_size, dims.image_size],
                    "dtype": "float32", "layout": "B,T,C,H,W", "range": [0.0, 1.0], "color": "RGB"},
                   {"name": "audio", "shape": ["batch", dims.num_samples], "dtype": "float32",
                    "sample_rate": dims.sample_rate, "range": [-1.0, 1.0]}],
        "outputs": [{"name": "logits", "shape": ["batch", len(classes)], "dtype": "float32"}],
        "dynamic_axes": {"video": {"0": "batch"}, "audio": {"0": "batch"}, "logits": {"0": "batch"}},
        "frame_count": dims.num_frames, "frame_size": [dims.image_size, dims.image_size],
        "sample_rate": dims.sample_rate, "num_samples": dims.num_samples, "clip_seconds": pre.clip_seconds,
        "normalisation": base.get("video", {}).get("normalisation", "inside the model"),
        "compute_precision": precision, "class_names": classes,
    }


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse an --out that holds an export unless --force; nothing is deleted here (see `_commit`)."""
    existing = [n for n in (*ARTIFACT_NAMES.values(), SIDECAR, VERDICT_TXT) if (out / n).exists()]
    if existing and not force:
        raise FileExistsError(f"{out} already holds {', '.join(existing)}; refusing to overwrite (use --force "
                              "to replace it once the new export is complete, or choose another --out)")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--out {out} is a file, not a folder")


def _commit(stage: Path, out: Path, sidecar: dict) -> None:
    """Move a complete, verified export from its staging folder into `out`. Until here the previous export is
    untouched. The artifact goes first and the sidecar (which holds its sha256) after it, so a kill in between
    leaves a pair that predict refuses, never a wrong one; old files the new export does not replace go last."""
    from emodistill.core.utils import sha256_file

    artifact = stage / sidecar["artifact"]
    if not artifact.is_file() or sha256_file(artifact) != sidecar["sha256"]:
        raise RuntimeError(f"{artifact}: the staged artifact does not match its sidecar; {out} was left as it was")
    last = (SIDECAR, VERDICT_TXT)
    names = sorted((p.name for p in stage.iterdir()), key=lambda n: (n in last, last.index(n) if n in last else 0))
    for n in names:
        os.replace(stage / n, out / n)
    for n in (*ARTIFACT_NAMES.values(), SIDECAR, VERDICT_TXT):
        if n not in names:
            (out / n).unlink(missing_ok=True)


def run_export(args) -> int:
    """Export into a staging folder inside --out; a failure at any point leaves --out as it was. --out is locked
    for the whole export (emodistill.core.lock): a second command writing into it is refused."""
    from emodistill.core.lock import folder_lock

    _resolve_args(args)
    with folder_lock(args.out, what="export"):
        return _run_export(args)


def _run_export(args) -> int:
    out = Path(args.out)
    _prepare_out(out, args.force)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        return _export(args, stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if created and not any(out.iterdir()):
            out.rmdir()


def _accuracy(logits: np.ndarray, clips: Clips, num_classes: int) -> dict | None:
    from .onnx import accuracy_report

    if clips.test is None:
        return None
    labels = np.concatenate([np.asarray(b["label"]) for b in clips.test])
    return accuracy_report(logits, labels, num_classes)


def _accuracy_block(args, ref: np.ndarray, art: np.ndarray, clips: Clips, num_classes: int) -> dict:
    """Test-split accuracy of the artifact vs the fp32 PyTorch model, and their top-1 agreement."""
    acc_t, acc_a = _accuracy(ref, clips, num_classes), _accuracy(art, clips, num_classes)
    drop = 100 * (acc_t["accuracy"] - acc_a["accuracy"])
    return {"split": "test", "n": int(len(ref)), "pytorch_fp32": acc_t, "artifact": acc_a, "drop_points": drop,
            "top1_agreement": float((ref.argmax(-1) == art.argmax(-1)).mean()),
            "max_drop_points": args.max_accuracy_drop, "passed": drop <= args.max_accuracy_drop}


def _reuse_onnx(args, dest: Path) -> dict | None:
    """Copy `--onnx` (an fp32 export of this same checkpoint, per its sidecar) to `dest`; None without --onnx."""
    import shutil

    from emodistill.core.checkpoint import fingerprint
    from emodistill.core.utils import read_json

    src = getattr(args, "onnx", None)
    if not src:
        return None
    src = Path(src)
    side = src.with_suffix(".json")
    if not src.exists() or not side.exists():
        raise FileNotFoundError(f"--onnx {src}: the file or its sidecar {side.name} does not exist")
    meta = read_json(side, "--onnx sidecar")
    want = fingerprint(args.model)
    have = (meta.get("source_checkpoint") or {}).get("weights_sha256")
    if meta.get("precision") != "fp32" or meta.get("format") != "onnx" or not want or have != want:
        raise ValueError(f"--onnx {src}: not an fp32 ONNX export of {args.model} (sidecar says format "
                         f"{meta.get('format')}, precision {meta.get('precision')}, weights sha256 "
                         f"{str(have)[:12]} vs the checkpoint's {str(want)[:12]})")
    shutil.copyfile(src, dest)
    return {**meta.get("export", {}), "reused_from": str(src)}


def _export_onnx(args, model, dims, clips: Clips, out: Path, num_classes: int) -> dict:
    from .onnx import (compare_logits, export_onnx, make_session, onnx_model_size, ort_latency, session_logits,
                       torch_logits)
    from .quantize import QuantConfig, make_reader, quantize_int8

    path = out / ARTIFACT_NAMES["onnx"]
    info: dict = {}
    if args.precision == "int8":
        fp32 = out / ".model-fp32.onnx"
        try:
            info["export"] = _reuse_onnx(args, fp32) or export_onnx(model, dims, fp32, "fp32")
            qcfg = QuantConfig(mode=args.int8_mode, target=args.int8_target or "cpu", calib_samples=args.calib_samples,
                               calibrate_method=args.calibrate_method)
            reader = make_reader(clips.calib, args.calib_samples) if args.int8_mode == "static" else None
            info["quantization"] = quantize_int8(fp32, path, qcfg, reader)
            info["quantization"]["calibration_data"] = clips.source if args.int8_mode == "static" else None
            if args.int8_mode == "static" and not clips.real:
                logger.warning("INT8 calibrated on random inputs (no --data): ranges will not match real clips")
        finally:
            fp32.unlink(missing_ok=True)
    else:
        info["export"] = ((args.precision == "fp32" and _reuse_onnx(args, path))
                          or export_onnx(model, dims, path, args.precision))
    sess = make_session(path, threads=args.threads)
    ref, _ = torch_logits(model, clips.parity)
    info["parity"] = compare_logits(ref, session_logits(sess, clips.parity), args.precision,
                                    judge_top1=clips.real or args.precision != "int8")
    info["parity"]["inputs"] = clips.source
    if clips.test is not None:
        info["accuracy"] = _accuracy_block(args, torch_logits(model, clips.test)[0],
                                           session_logits(sess, clips.test), clips, num_classes)
    if args.format == "onnx":  # an engine's ONNX is its source, not the artifact to time
        batches = sorted({1, args.budget_batch})
        info["ort_cpu_latency"] = [ort_latency(sess, dims, b, **args.latency_kw) for b in batches]
    info["size_bytes"] = onnx_model_size(path)
    return info


def _export_tensorrt(args, model, dims, clips: Clips, out: Path, num_classes: int) -> tuple[dict, object]:
    from .onnx import compare_logits, torch_logits
    from .tensorrt import build_engine

    path = out / ARTIFACT_NAMES["tensorrt"]
    facts, compiled = build_engine(model, dims, args.precision, path, opt_batch=args.budget_batch,
                                   max_batch=args.max_batch, calib=clips.calib,
                                   hardware_compatible=args.hardware_compatible)

    @torch.no_grad()
    def trt_logits(batches):
        return np.concatenate([compiled(b["video"].cuda(), b["audio"].cuda()).float().cpu().numpy() for b in batches])

    info: dict = {"export": facts}
    ref, _ = torch_logits(model.cpu(), clips.parity)
    info["parity"] = compare_logits(ref, trt_logits(clips.parity), args.precision,
                                    judge_top1=clips.real or args.precision != "int8")
    info["parity"]["inputs"] = clips.source
    if clips.test is not None:
        info["accuracy"] = _accuracy_block(args, torch_logits(model.cpu(), clips.test)[0], trt_logits(clips.test),
                                           clips, num_classes)
    info["size_bytes"] = path.stat().st_size
    return info, compiled


def _export_rtx(args, model, dims, clips: Clips, out: Path, num_classes: int, profile) -> dict:
    """The verified ONNX (checker + ORT parity/accuracy, kept as model.onnx) -> TensorRT for RTX engine."""
    from emodistill.core.utils import sha256_file

    from .trt_rtx import build_engine

    args.int8_target = "tensorrt"
    info = _export_onnx(args, model, dims, clips, out, num_classes)
    onnx_path = out / ARTIFACT_NAMES["onnx"]
    info["onnx_artifact"] = {"file": onnx_path.name, "sha256": sha256_file(onnx_path),
                             "size_bytes": info.pop("size_bytes")}
    info["export"]["engine"] = build_engine(onnx_path, out / ARTIFACT_NAMES["tensorrt"], profile.gpu.compute_capability,
                                            profile.name, opt_batch=args.budget_batch, max_batch=args.max_batch)
    return info


def _engine_runner(path: Path, profile):
    """A runner for the engine when a GPU of its compute capability is here (measured latency), else None."""
    from .trt_rtx import EngineRunner, runnable_here

    ok, why = runnable_here(profile.gpu.compute_capability)
    if not ok:
        logger.info("engine latency not measured: %s", why)
        return None
    return EngineRunner(path.read_bytes(), profile.gpu.compute_capability)


def _io_bytes(dims, batch: int, num_classes: int) -> int:
    """Device copies of the float32 inputs and logits at `batch`."""
    return 4 * (sum(int(np.prod(s)) for s in dims.shapes(batch).values()) + batch * num_classes)


def _export(args, out: Path, final: Path) -> int:
    """The export itself, written into `out` (the staging folder) and committed into `final`."""
    from emodistill.core.checkpoint import load_checkpoint
    from emodistill.core.utils import write_json_atomic

    from .wrappers import Dims
    from .tensorrt import trtexec_command

    budget, profile = _checked_budget(args)
    rtx = args.format == "tensorrt" and getattr(args, "trt_backend", "rtx") == "rtx"
    if rtx:
        _check_rtx(args, profile)
    elif args.format == "tensorrt" and not _torch_tensorrt_available(args.precision):
        return EXIT_UNAVAILABLE
    args.budget_batch = budget.batch_size
    import emodistill.student, emodistill.teacher  # noqa: E401,F401  (register the model families load_checkpoint rebuilds)
    model, meta = load_checkpoint(args.model)
    dims = Dims.from_preprocess(meta["preprocess"])
    num_classes = len(meta["class_names"])
    clips = load_clips(args, meta, dims)

    info, runner, engine_vram = _build_artifact(args, model, dims, clips, out, num_classes, profile, rtx)
    artifact = out / ARTIFACT_NAMES[args.format]
    trtexec = trtexec_command(final / "model.onnx", dims, args.precision, budget.batch_size, args.max_batch)
    verdict = _verdict(args, model, dims, budget, profile, num_classes, info, runner, engine_vram, rtx)
    sidecar = _sidecar(args, artifact, meta, dims, info, trtexec, budget, profile, verdict, rtx)
    write_json_atomic(out / SIDECAR, sidecar)
    (out / VERDICT_TXT).write_text(verdict.table() + "\n")
    _commit(out, final, sidecar)

    _print_summary(args, final, sidecar, info, trtexec, verdict, budget, profile, rtx)
    if not verdict.passed:
        return EXIT_BUDGET
    acc = info.get("accuracy")
    if not info["parity"]["passed"] or (acc and not acc["passed"]):
        return EXIT_PARITY
    return EXIT_OK


def _checked_budget(args) -> tuple:
    """-> (budget, its hardware profile), checked against --precision and --verdict before any work."""
    from .profiles import load_budget

    budget, profile = load_budget(args.budget, args.budget_set)
    if budget.precision and budget.precision != args.precision:
        raise ValueError(f"budget {budget.name} is for {budget.precision}, but --precision is {args.precision}; "
                         f"pick a matching budget or add --set budget.precision={args.precision}")
    if args.verdict == "measured" and not torch.cuda.is_available():
        raise RuntimeError("--verdict measured needs a CUDA GPU; none is visible (use --verdict estimated)")
    return budget, profile


def _check_rtx(args, profile) -> None:
    """TensorRT for RTX is here, targets the profile's compute capability and takes the INT8 target."""
    from .trt_rtx import sm_target, trt_module

    sm_target(profile.gpu.compute_capability, profile.name)  # a clear error before any work
    trt_module()
    if args.int8_target == "cpu" and args.precision == "int8":
        raise ValueError("--int8-target cpu makes uint8 activations that TensorRT does not take; drop it for "
                         "--format tensorrt (the default there is tensorrt)")


def _torch_tensorrt_available(precision: str) -> bool:
    """Whether torch-tensorrt can build an engine here; if not, says why and what to use instead on stderr."""
    from .tensorrt import availability

    ok, reason = availability(precision)
    if not ok:
        print(f"TensorRT export is not possible on this machine: {reason}.\n"
              f"Use the default --trt-backend rtx (TensorRT for RTX, no GPU needed), or --format onnx and "
              f"trtexec on the target GPU.", file=sys.stderr)
    return ok


def _build_artifact(args, model, dims, clips: Clips, out: Path, num_classes: int, profile, rtx: bool) -> tuple:
    """The --format artifact in `out`, with its parity / accuracy / latency checks -> (info, a runner of the engine
    where it runs here or None, the torch-tensorrt engine's VRAM in MB or None)."""
    runner = engine_vram = None
    if args.format == "onnx":
        info = _export_onnx(args, model, dims, clips, out, num_classes)
    elif rtx:
        info = _export_rtx(args, model, dims, clips, out, num_classes, profile)
        runner = _engine_runner(out / ARTIFACT_NAMES["tensorrt"], profile)
    else:
        info, runner = _export_tensorrt(args, model, dims, clips, out, num_classes)
        mem = info["export"]["engine"]
        engine_vram = (mem["device_memory_bytes"] + mem["weights_bytes"]) / 2**20
    return info, runner, engine_vram


def _verdict(args, model, dims, budget, profile, num_classes: int, info: dict, runner, engine_vram, rtx: bool):
    """The budget verdict: measured (on the engine itself where a runner is given) or estimated; a TensorRT-RTX
    engine's VRAM is what its build compiled."""
    from .budget import make_verdict, with_compiled_vram
    from .trt_rtx import device_memory_bytes

    measure_kw = {"seconds": args.measure_seconds, "min_runs": args.runs} if args.verdict != "estimated" else {}
    if runner is not None:
        measure_kw |= {"runner": runner, "engine_vram_mb": engine_vram, "what": f"TensorRT engine {args.precision}"}
    mode = args.verdict
    if rtx and runner is None and mode == "auto":  # a GPU that cannot run the engine would time something else
        mode = "estimated"
    verdict = make_verdict(model.cpu(), dims, budget, profile, args.precision, mode, **measure_kw)
    if not rtx:
        return verdict
    facts = info["export"]["engine"]
    return with_compiled_vram(verdict, budget, profile, device_memory_bytes(facts["memory"]),
                              _io_bytes(dims, budget.batch_size, num_classes), f"TensorRT-RTX {facts['target']} engine")


def _sidecar(args, artifact: Path, meta: dict, dims, info: dict, trtexec: str, budget, profile, verdict,
             rtx: bool) -> dict:
    """model.json: the artifact and its sha256, the input contract, the source checkpoint, the checks, the budget
    verdict and the versions that made it."""
    from emodistill.core.utils import sha256_file, versions

    from .onnx import tolerances_table

    ver = versions()
    if rtx:
        ver["tensorrt_rtx"] = info["export"]["engine"]["tensorrt_rtx"]
    elif args.format == "tensorrt":
        import torch_tensorrt

        ver["torch_tensorrt"] = torch_tensorrt.__version__
    return {
        "artifact": artifact.name, "format": args.format, "precision": args.precision,
        "sha256": sha256_file(artifact), "size_bytes": artifact.stat().st_size,
        "input_contract": contract_for(meta, dims, args.precision),
        "source_checkpoint": {"path": str(Path(args.model).resolve()), "family": meta.get("family"),
                              "weights_sha256": meta.get("weights_sha256"), "num_parameters": meta.get("num_parameters"),
                              "git_commit": meta.get("git_commit"), "model": meta.get("model")},
        **{k: v for k, v in info.items() if k != "size_bytes"},
        "tolerances": tolerances_table(), "trtexec": trtexec,
        "budget": {"spec": budget.model_dump(), "profile": profile.summary(), "verdict": verdict.to_dict()},
        "versions": ver, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }


def _print_summary(args, final: Path, sidecar: dict, info: dict, trtexec: str, verdict, budget, profile,
                   rtx: bool) -> None:
    """What was written to `final` and how each check went; the engine's facts, or the trtexec line that builds one
    on the target GPU; the verdict table."""
    artifact = final / sidecar["artifact"]
    print(f"wrote {artifact} ({artifact.stat().st_size / 2**20:.2f} MB, sha256 {sidecar['sha256'][:16]}...) "
          f"and {final / SIDECAR}")
    par = info["parity"]
    print(f"parity vs PyTorch fp32 ({par['n']} clips, {par['inputs']}): max|diff| {par['max_abs_diff']:.2e}, "
          f"top-1 agreement {par['top1_agreement']:.1%} -> {'ok' if par['passed'] else 'OUT OF TOLERANCE'} "
          f"({par['tolerance']['rule']})")
    acc = info.get("accuracy")
    if acc:
        print(f"test accuracy ({acc['n']} clips): artifact {acc['artifact']['accuracy']:.2%} vs PyTorch fp32 "
              f"{acc['pytorch_fp32']['accuracy']:.2%} (drop {acc['drop_points']:+.2f} points, max "
              f"{acc['max_drop_points']:g}; top-1 agreement {acc['top1_agreement']:.1%}) -> "
              f"{'ok' if acc['passed'] else 'OUT OF TOLERANCE'}")
    for lat in info.get("ort_cpu_latency", []):
        print(f"ONNX Runtime CPU ({lat['threads']} thread): batch {lat['batch_size']} p50 {lat['p50_ms']:.2f} ms, "
              f"p95 {lat['p95_ms']:.2f} ms")
    if rtx:
        e = info["export"]["engine"]
        mem = {k: v / 2**20 for k, v in e["memory"].items()}
        print(f"TensorRT-RTX {e['tensorrt_rtx']} engine for {e['target']} (compute capability {e['compute_capability']}, "
              f"{profile.name}): {e['engine_bytes'] / 2**20:.2f} MB, built in {e['build_seconds']:.1f} s; compiled memory "
              f"weights {mem.get('weights_bytes', 0):.2f} MB, activations {mem.get('activation_bytes', 0):.2f} MB "
              f"(scratch {mem.get('scratch_bytes', 0):.2f} MB, batch <= {max(args.max_batch, budget.batch_size)}), "
              f"persistent {mem.get('device_persistent_bytes', 0):.2f} MB")
    else:
        print(f"TensorRT build on the target GPU: {trtexec}")
    print(verdict.table())


def main(argv: list[str] | None = None) -> int:
    from emodistill.core.utils import setup_logging

    from emodistill.core.cli_args import HelpFormatter

    parser = argparse.ArgumentParser(prog="export/run.py", description=__doc__.split("\n")[0],
                                     formatter_class=HelpFormatter)
    add_export_arguments(parser)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="debug logging and tracebacks of errors")
    args = parser.parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose or args.debug else logging.INFO)
    from emodistill.core.errors import run_guarded

    return run_guarded(run_export, args, debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
