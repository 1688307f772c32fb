"""The model behind `emodistill predict`: a checkpoint or an exported artifact, with its input contract.

The clip is decoded exactly as in training: the preprocessing contract comes from the checkpoint's
`checkpoint.json` or the export sidecar. An artifact whose sidecar does not match the artifact itself
(input shapes, sha256) is rejected with a message saying what differs.

Running an exported artifact imports numpy, PyAV, OpenCV and ONNX Runtime only: torch is imported for a checkpoint
(and, for now, to run a TensorRT engine on a GPU), never for an ONNX file. `predict` (one clip) and `timeline`
(a stream) both run a `Predictor`; this module imports neither.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..core.checkpoint import is_checkpoint_path
from ..core.contract import Preprocess
from ..core.utils import read_json, sha256_file

logger = logging.getLogger(__name__)


class ContractError(ValueError):
    """A model whose description (sidecar or checkpoint) does not match the model or the request."""


def find_sidecar(artifact: Path) -> Path:
    for cand in (artifact.with_suffix(".json"), artifact.parent / "sidecar.json"):
        if cand.exists() and not is_checkpoint_path(cand):  # not the checkpoint's own JSON
            return cand
    raise ContractError(f"{artifact}: no sidecar JSON next to it (looked for {artifact.with_suffix('.json').name} "
                        "and sidecar.json); export writes one, and predict needs its input contract")


def _dims(shape) -> list:
    """ONNX Runtime's shape of an input or output: ints, with symbolic or unknown dimensions as their name or '?'."""
    return [d if isinstance(d, int) else (d or "?") for d in shape]


def onnx_session(path: Path):
    """A CPU ONNX Runtime session of `path` (the one the predictor runs)."""
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # an optional input (modality_mask) warns on every load
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def check_onnx_contract(path: Path, sidecar: dict, session=None) -> list[str]:
    """Differences between an ONNX file and its sidecar (empty list = they match). `session`: the file's ONNX
    Runtime session when already open (it is opened here otherwise)."""
    diffs = []
    want_sha = sidecar.get("sha256") or (sidecar.get("artifact") or {}).get("sha256")
    if want_sha and sha256_file(path) != want_sha:
        diffs.append(f"sha256: sidecar says {want_sha[:12]}..., file is {sha256_file(path)[:12]}... "
                     "(the sidecar belongs to another export)")
    pre = Preprocess.model_validate(sidecar["preprocess"])
    want = {"video": [pre.num_frames, 3, pre.image_size, pre.image_size], "audio": [pre.num_samples]}
    if session is None:
        try:
            session = onnx_session(path)
        except Exception as e:  # ORT's InvalidProtobuf / Fail: not an ONNX file at all
            return [*diffs, f"not a readable ONNX model ({type(e).__name__}: {str(e)[:100]})"]
    outs = [_dims(o.shape) for o in session.get_outputs()]
    n_classes = len(sidecar.get("class_names") or [])
    if outs and len(outs[0]) == 2 and isinstance(outs[0][1], int) and n_classes and outs[0][1] != n_classes:
        diffs.append(f"class_names: the sidecar lists {n_classes} classes, the model outputs {outs[0][1]} logits")
    inputs = session.get_inputs()  # graph inputs that are not initializers (modality_mask is overridable)
    for vi, (name, shape) in zip(inputs, want.items()):
        have = _dims(vi.shape)[1:]
        if have != shape:
            diffs.append(f"{name} input: model takes {have} per clip, sidecar contract says {shape}")
    return diffs


def _output_width(contract: dict) -> int | None:
    """The class dimension the sidecar records for the model's first output, when it states one."""
    outs = contract.get("outputs") or []
    if isinstance(outs, dict):  # core.contract.input_contract: {"logits": ["batch", C]}
        outs = [{"name": k, "shape": v} for k, v in outs.items()]
    first = outs[0] if isinstance(outs, list) and outs and isinstance(outs[0], dict) else {}
    shape = first.get("shape")
    return shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else None


def _preprocess(data, source: Path) -> Preprocess:
    from pydantic import ValidationError

    from ..core.config import format_validation_error

    try:
        return Preprocess.model_validate(data)
    except ValidationError as e:
        raise ContractError(format_validation_error(Preprocess, e, f"{source} (preprocess)")) from None


class Predictor:
    """Wraps a checkpoint, an ONNX file or a TensorRT engine behind `probs(video, audio) -> [C]`."""

    def __init__(self, model_path: str | Path, expect: dict | None = None):
        self.path = Path(model_path)
        if not self.path.exists():
            raise FileNotFoundError(f"model not found: {self.path}")
        self.verdict = None  # the export's budget verdict, when the artifact has a sidecar
        if is_checkpoint_path(self.path):
            self.kind = "checkpoint"
            import emodistill.student, emodistill.teacher  # noqa: E401,F401  (register the model families load_checkpoint rebuilds)
            from ..core.checkpoint import load_checkpoint

            self.model, meta = load_checkpoint(self.path)
            self.preprocess = _preprocess(meta["preprocess"], self.path)
            self.class_names = meta["class_names"]
        else:
            sidecar = read_json(find_sidecar(self.path), "sidecar")
            contract = (sidecar.get("input_contract") or sidecar.get("contract") or sidecar
                        if isinstance(sidecar, dict) else {})
            if "preprocess" not in contract or "class_names" not in contract:
                raise ContractError(f"{find_sidecar(self.path)}: no preprocess / class_names in the sidecar")
            self.preprocess = _preprocess(contract["preprocess"], find_sidecar(self.path))
            self.class_names = contract["class_names"]
            width = _output_width(contract)
            if width is not None and width != len(self.class_names):
                raise ContractError(f"{find_sidecar(self.path)}: input_contract.class_names lists "
                                    f"{len(self.class_names)} classes but the model's output "
                                    f"'logits' has {width}; the sidecar "
                                    "was edited or belongs to another export (export the model again)")
            if self.path.suffix == ".onnx":
                try:
                    session = onnx_session(self.path)
                except Exception:  # noqa: BLE001 - not an ONNX file: check_onnx_contract says what differs
                    session = None
                diffs = check_onnx_contract(self.path, {**contract, "sha256": sidecar.get("sha256")}, session)
                if diffs or session is None:
                    raise ContractError(f"{self.path} does not match its sidecar:\n  " + "\n  ".join(diffs))
                self.kind = "onnx"
                self.session = session
                self.input_names = [i.name for i in self.session.get_inputs()]  # read once, not per window
            else:
                from emodistill.export.trt_rtx import load_engine  # a one-line error without an NVIDIA GPU of its target

                self.kind = "tensorrt"
                self.model = load_engine(self.path, sidecar)
            self.verdict = (sidecar.get("budget") or {}).get("verdict")
        if expect:
            diffs = [f"preprocess.{k}: model expects {getattr(self.preprocess, k)!r}, you asked for {v!r}"
                     for k, v in expect.items() if getattr(self.preprocess, k) != v]
            if diffs:
                raise ContractError(f"{self.path}: contract mismatch:\n  " + "\n  ".join(diffs))

    def load(self, clip: str | Path, wav: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Decode a clip per the contract -> video float32 [1,T,3,H,W] in [0,1], audio float32 [1,N]."""
        from ..core.data.decode import DecodeError, load_clip

        try:
            video, audio, _ = load_clip(clip, wav, self.preprocess)
        except DecodeError as e:
            raise DecodeError(f"{clip}: {e}" if str(clip) not in str(e) else str(e)) from None
        video = np.ascontiguousarray(video.transpose(0, 3, 1, 2), dtype=np.float32)[None] / 255.0
        return video, audio[None].astype(np.float32)

    @property
    def supports_mask(self) -> bool:
        """Whether the model takes a modality mask (its missing-modality path) rather than zeroed inputs."""
        if self.kind == "onnx":
            return "modality_mask" in {i.name for i in self.session.get_overridable_initializers()}
        if self.kind != "checkpoint":
            return False
        from emodistill.export.onnx import accepts_mask

        return accepts_mask(self.model)

    def probs(self, video: np.ndarray, audio: np.ndarray, modality_mask: np.ndarray | None = None) -> np.ndarray:
        """-> [C] probabilities of the first clip; `modality_mask` [1, 2] float (audio, video; 1 = present)
        needs `supports_mask`."""
        if self.kind == "onnx":
            feed = dict(zip(self.input_names, (video, audio)))
            if modality_mask is not None:
                feed["modality_mask"] = modality_mask
            logits = self.session.run(None, feed)[0]
        else:
            import torch

            kw = {} if modality_mask is None else {"modality_mask": torch.from_numpy(modality_mask)}
            with torch.no_grad():
                out = self.model(torch.from_numpy(video), torch.from_numpy(audio), **kw)
            logits = (out["logits"] if isinstance(out, dict) else out).float().cpu().numpy()
        if logits.shape[-1] != len(self.class_names):
            raise ContractError(f"{self.path}: the model outputs {logits.shape[-1]} logits but its description lists "
                                f"{len(self.class_names)} class names")
        logits = logits - logits.max(-1, keepdims=True)
        p = np.exp(logits)
        return (p / p.sum(-1, keepdims=True))[0]

    def __call__(self, clip: str | Path, wav: str | Path | None = None) -> dict:
        p = self.probs(*self.load(clip, wav))
        order = np.argsort(-p)
        out = {"clip": str(clip), "model": str(self.path), "backend": self.kind,
               "prediction": self.class_names[order[0]],
               "probabilities": {self.class_names[i]: float(p[i]) for i in order}}
        if self.verdict:
            out["budget"] = budget_line(self.verdict)
        return out


def budget_line(v: dict) -> str:
    """The export's budget verdict in one line, each figure with its label (measured / compiled / estimated)."""
    labels, f = v.get("labels") or {}, v["figures"]
    lab = lambda k: labels.get(k, v["method"])  # noqa: E731
    return (f"{v['budget']} on {v['profile']} (batch {v['batch_size']}, {v['precision']}): p50 {f['p50_ms']:.2f} ms "
            f"[{lab('p50_ms')}], p95 {f['p95_ms']:.2f} ms [{lab('p95_ms')}], VRAM {f['vram_mb']:.0f} MB "
            f"[{lab('vram_mb')}] -> {v.get('call') or ('PASS' if v['passed'] else 'EXCEEDED')}")


__all__ = ["Predictor", "ContractError", "find_sidecar", "check_onnx_contract", "onnx_session", "budget_line"]
