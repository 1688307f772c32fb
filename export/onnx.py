"""ONNX export (fp32 / fp16), checking, parity against PyTorch, ONNX Runtime evaluation and latency.

Every artifact has the same interface whatever its precision: inputs `video` float32 [batch, T, 3, H, W]
and `audio` float32 [batch, N] (T, H, W, N fixed by the checkpoint's preprocess contract, batch dynamic),
output `logits` float32 [batch, C]. Casting to fp16 happens inside the graph.

FP16 is produced by exporting a half-precision copy of the model (no onnxconverter-common): modules whose
class name matches `KEEP_FP32` (Layer/RMS/GroupNorm, the log-mel/STFT front end) stay fp32 with casts around them, and
explicit fp32 upcasts in the model (RMSNorm statistics) survive because they are part of the traced graph.

Parity tolerances (logits of the artifact vs the fp32 PyTorch model on the same clips):
  fp32: max|diff| <= 1e-4 + 1e-4 * max|logit|, top-1 agreement >= 99%
  fp16: max|diff| <= 1e-2 + 1e-2 * max|logit|, top-1 agreement >= 98%
  (top-1 judged on clips whose fp32 top-1 leads the runner-up by more than twice the max|diff| bound)
  int8: max|diff| reported only, top-1 agreement >= 90% on real clips (not judged on random inputs; accuracy
        within 1 point of fp32 is checked separately on the test split when real clips are given)
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from torch import nn

from emodistill.core.metrics import classification_metrics
from emodistill.core.timing import time_callable

from .wrappers import KEEP_FP32, Dims, ExportWrapper, half_model, random_inputs

logger = logging.getLogger(__name__)

OPSET = 18
INPUT_NAMES = ("video", "audio")
# optional third input of models with a missing-modality path: [batch, 2] (audio, video; 1 = present). It is an
# initializer as well as an input, so it defaults to "both present" and callers that feed only video + audio
# get the unmasked model (ONNX Runtime: `get_overridable_initializers()`).
MASK_INPUT = "modality_mask"
OUTPUT_NAMES = ("logits",)
MAX_SINGLE_FILE = 1_800_000_000  # protobuf's 2 GB limit, with margin: larger models get external data


@dataclass(frozen=True)
class Tolerance:
    atol: float | None
    rtol: float
    min_top1: float

    def bound(self, ref_max: float) -> float | None:
        return None if self.atol is None else self.atol + self.rtol * ref_max


TOLERANCES = {"fp32": Tolerance(1e-4, 1e-4, 0.99), "fp16": Tolerance(1e-2, 1e-2, 0.98),
              "int8": Tolerance(None, 0.0, 0.90)}


def accepts_mask(model: nn.Module) -> bool:
    """Whether `model.forward` takes a `modality_mask` (the student's missing-modality path)."""
    import inspect

    return "modality_mask" in inspect.signature(model.forward).parameters


def add_mask_default(path: str | Path) -> None:
    """Make the `modality_mask` input optional: an initializer of ones [1, 2] with the input's name."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path), load_external_data=False)  # external tensors keep their references
    m.graph.initializer.append(numpy_helper.from_array(np.ones((1, 2), np.float32), MASK_INPUT))
    # the default has batch 1 while the clips have `batch`: its own symbol, and no exporter shapes tying the
    # two (ONNX Runtime plans buffers from them; it infers the shapes again)
    next(i for i in m.graph.input if i.name == MASK_INPUT).type.tensor_type.shape.dim[0].dim_param = "mask_batch"
    del m.graph.value_info[:]
    onnx.save(m, str(path))


def export_onnx(model: nn.Module, dims: Dims, path: str | Path, precision: str = "fp32", opset: int = OPSET,
                keep_fp32: str = KEEP_FP32) -> dict:
    """Export `model` (the model contract of emodistill.core.model: its `logits`) to one ONNX file with a dynamic
    batch axis; returns export facts."""
    if precision not in ("fp32", "fp16"):
        raise ValueError(f"export_onnx makes fp32 or fp16 graphs, got {precision!r} (int8: export fp32, then quantize)")
    kept: list[str] = []
    if precision == "fp16":
        model, kept = half_model(model, keep_fp32)
        wrapper = ExportWrapper(model, torch.float16).eval()
    else:
        wrapper = ExportWrapper(model).eval()
    example = random_inputs(dims, 2)
    names, dynamic = list(INPUT_NAMES), {"video": {0: "batch"}, "audio": {0: "batch"}}
    batch = torch.export.Dim("batch", min=1, max=4096)
    masked = accepts_mask(model)
    if masked:
        example, names = (*example, torch.ones(2, 2)), names + [MASK_INPUT]
        dynamic[MASK_INPUT] = {0: "batch"}
    n_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    for name in ("onnxscript", "onnx_ir"):  # their INFO lines list every rewrite: hundreds per export
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger(name).level))
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, example, str(path), dynamo=True, opset_version=opset,
                          external_data=n_bytes > MAX_SINGLE_FILE, input_names=names,
                          output_names=list(OUTPUT_NAMES), verbose=False,
                          dynamic_shapes={k: {0: batch} for k in dynamic})
    logger.info("exported %s (%s) in %.1fs", path, precision, time.time() - t0)
    if n_bytes <= MAX_SINGLE_FILE:
        strip_metadata(path)
    if masked:
        add_mask_default(path)
    check_onnx(path)
    return {"opset": opset, "exporter": f"torch.onnx.export(dynamo=True) torch {torch.__version__}",
            "dynamic_axes": {**dynamic, "logits": {0: "batch"}},
            "optional_inputs": {MASK_INPUT: "default ones [1, 2]"} if masked else {},
            "external_data": n_bytes > MAX_SINGLE_FILE, "fp32_modules": kept, "export_seconds": round(time.time() - t0, 2)}


KEEP_METADATA = ("pkg.torch.onnx.name_scopes",)  # module paths: INT8 exclusion and debugging need them


def strip_metadata(path: str | Path) -> None:
    """Drop per-node exporter metadata except module paths: stack traces name files and lines of this checkout,
    so without this the artifact's bytes depend on where the repo lives (and grow by ~25%)."""
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        keep = [p for p in node.metadata_props if p.key in KEEP_METADATA]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    onnx.save(m, str(path))


def check_onnx(path: str | Path) -> None:
    """`onnx.checker` (by path, so models with external data work too), with shape inference."""
    import onnx

    onnx.checker.check_model(str(path), full_check=True)


def onnx_model_size(path: str | Path) -> int:
    """Bytes of the artifact (plus its external data files, if any)."""
    path = Path(path)
    extra = sum(p.stat().st_size for p in path.parent.glob(path.name + ".data"))
    return path.stat().st_size + extra


def make_session(path: str | Path, threads: int = 1, providers: list[str] | None = None):
    """An ONNX Runtime session; `threads` intra-op threads (1 = reproducible single-core figures)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers or ["CPUExecutionProvider"])


def run_session(sess, video: torch.Tensor | np.ndarray, audio: torch.Tensor | np.ndarray) -> np.ndarray:
    v = video.numpy() if isinstance(video, torch.Tensor) else video
    a = audio.numpy() if isinstance(audio, torch.Tensor) else audio
    return sess.run(None, {"video": np.ascontiguousarray(v, np.float32), "audio": np.ascontiguousarray(a, np.float32)})[0]


def compare_logits(ref: np.ndarray, test: np.ndarray, precision: str, judge_top1: bool = True) -> dict:
    """max/mean abs diff and top-1 agreement of `test` against `ref`, judged by `TOLERANCES[precision]`.

    Where a max-abs bound applies, top-1 agreement is judged on the *decisive* clips only: those whose
    reference top-1 leads the runner-up by more than twice the bound (a near-tie may flip within tolerance).
    `judge_top1=False` reports top-1 agreement without judging it (INT8 on random inputs).
    """
    tol = TOLERANCES[precision]
    diff = np.abs(ref.astype(np.float64) - test.astype(np.float64))
    max_abs = float(diff.max()) if diff.size else 0.0
    same = ref.argmax(-1) == test.argmax(-1)
    agree = float(same.mean()) if len(ref) else 1.0
    bound = tol.bound(float(np.abs(ref).max()) if ref.size else 0.0)
    top2 = np.sort(ref, axis=-1)[:, -2:] if ref.ndim == 2 and ref.shape[1] > 1 else None
    decisive = (top2[:, 1] - top2[:, 0] > 2 * bound) if (bound is not None and top2 is not None) else np.ones(len(ref), bool)
    agree_decisive = float(same[decisive].mean()) if decisive.any() else 1.0
    top1_ok = (agree_decisive if bound is not None else agree) >= tol.min_top1 or not judge_top1
    passed = top1_ok and (bound is None or max_abs <= bound)
    return {"n": int(len(ref)), "max_abs_diff": max_abs, "mean_abs_diff": float(diff.mean()) if diff.size else 0.0,
            "top1_agreement": agree, "top1_agreement_decisive": agree_decisive, "decisive_clips": int(decisive.sum()),
            "tolerance": {"max_abs_diff": bound, "top1_agreement": tol.min_top1 if judge_top1 else None,
                          "rule": _rule(precision) + ("" if judge_top1 else " (top-1 not judged: random inputs)")},
            "passed": bool(passed)}


def _rule(precision: str) -> str:
    t = TOLERANCES[precision]
    if t.atol is None:
        return f"top-1 agreement >= {t.min_top1:.0%} (max abs diff reported only)"
    return (f"max|diff| <= {t.atol:g} + {t.rtol:g}*max|logit|, top-1 agreement >= {t.min_top1:.0%} on clips whose "
            f"fp32 top-1 leads by > 2x that bound")


@torch.no_grad()
def torch_logits(model: nn.Module, batches: Iterable[dict]) -> tuple[np.ndarray, np.ndarray | None]:
    """fp32 PyTorch logits (and labels, when the batches have them) over `batches` of dicts."""
    wrapper = ExportWrapper(model).eval()
    outs, labels = [], []
    for b in batches:
        outs.append(wrapper(b["video"], b["audio"]).numpy())
        if "label" in b:
            labels.append(np.asarray(b["label"]))
    return np.concatenate(outs), (np.concatenate(labels) if labels else None)


def session_logits(sess, batches: Iterable[dict]) -> np.ndarray:
    return np.concatenate([run_session(sess, b["video"], b["audio"]) for b in batches])


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    m = classification_metrics(labels, logits.argmax(-1), num_classes)
    return {k: m[k] for k in ("accuracy", "uar", "war", "macro_f1") if k in m}


def ort_latency(sess, dims: Dims, batch: int, seconds: float = 2.0, warmup: int = 3, min_runs: int = 5,
                max_runs: int = 1000, cpu_time: bool = False) -> dict:
    """Wall-clock latency of `sess.run` at `batch` on stand-in clips (`emodistill.core.timing` figures, ms:
    p50, p90, p95, mean, min; `cpu_ms` with `cpu_time`) over at least `min_runs` runs and `seconds`."""
    video, audio = random_inputs(dims, batch)
    feed = {"video": video.numpy(), "audio": audio.numpy()}
    timing = time_callable(lambda: sess.run(None, feed), warmup=warmup, repeats=min_runs, seconds=seconds,
                           max_runs=max_runs, cpu_time=cpu_time)
    return {"batch_size": batch, **timing, "provider": sess.get_providers()[0],
            "threads": sess.get_session_options().intra_op_num_threads}


def tolerances_table() -> dict:
    return {k: asdict(v) | {"rule": _rule(k)} for k, v in TOLERANCES.items()}


__all__ = ["OPSET", "TOLERANCES", "accepts_mask", "export_onnx", "check_onnx", "strip_metadata", "onnx_model_size",
           "make_session", "run_session", "compare_logits", "torch_logits", "session_logits", "accuracy_report",
           "ort_latency", "tolerances_table"]
