"""The Python API: the `emodistill` commands as functions with keyword arguments, for notebooks and scripts.

    import emodistill.api as emo

    model = emo.load("runs/distill/student_s")          # a run folder (-> best/), checkpoint, .onnx or .engine
    emo.predict(model, "clip.mp4")["prediction"]         # -> 'happy'
    timeline = emo.stream(model, "interview.mp4", hop=0.5)
    sidecar = emo.export_model("runs/distill/student_s", out="exports/s-int8", precision="int8",
                               budget="rtx3050-laptop-4gb-realtime", data="data/ravdess")
    emo.read_report("exports/s-int8")["budget"]["verdict"]["passed"]

Each function runs the code of its command (`emodistill predict`, `predict --stream`, `export`) and returns what
the command writes as JSON, as a dict. Errors are exceptions, not exit codes: FileNotFoundError, ValueError (also
`ContractError`: a model whose description does not match it), TypeError (an unknown keyword), ExportError (a
RuntimeError with the exit `code`). Nothing is printed: progress is logged (`logging.basicConfig(level=logging.INFO)`
shows it). torch, onnxruntime and PyAV are imported when needed: `import emodistill.api` is cheap. See docs/api.md.
"""

from __future__ import annotations

import io
import logging
import math
import os
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = ["load", "predict", "stream", "export_model", "read_report", "ExportError"]

REPORT_FILES = ("report.json", "model.json", "timeline.json")  # what `compare`, `export`, `--stream` write


class ExportError(RuntimeError):
    """An export that ended with exit code 3 (over budget) or 4 (parity / accuracy outside tolerance), with the
    written sidecar in `.sidecar`, or 5 (TensorRT not available on this machine; `.sidecar` None)."""

    def __init__(self, code: int, out: Path, sidecar: dict | None):
        what = {3: "over budget", 4: "parity or accuracy outside tolerance", 5: "TensorRT not available here"}
        super().__init__(f"export into {out} ended with exit code {code} ({what.get(code, 'failed')})"
                         + (f"; the sidecar is {out / 'model.json'}" if sidecar else ""))
        self.code, self.out, self.sidecar = code, out, sidecar


class _LogLines(io.TextIOBase):
    """Logs each line written to it (what a command prints); a write made while logging goes to `real`."""

    def __init__(self, level: int, real):
        self.level, self.real, self.buf, self.busy = level, real, "", False

    def write(self, s: str) -> int:
        if self.busy:
            return self.real.write(s)
        *lines, self.buf = (self.buf + s).split("\n")
        self.busy = True
        try:
            for line in lines:
                logger.log(self.level, "%s", line)
        finally:
            self.busy = False
        return len(s)

    def flush(self) -> None:
        if self.buf:
            self.write("\n")


def _resolve(model: str | os.PathLike, artifacts: bool = True) -> Path:
    """A model path as Predictor takes it: an export folder -> its artifact, a run folder -> its best/."""
    path = Path(model)
    if not path.exists():
        raise FileNotFoundError(f"model not found: {path}")
    if not path.is_dir():
        return path
    from .core.checkpoint import META
    from .core.utils import read_json

    if artifacts and (path / "model.json").is_file() and not (path / META).is_file():  # an `export --out` folder
        artifact = read_json(path / "model.json", "export sidecar").get("artifact")
        if artifact and (path / artifact).is_file():
            return path / artifact
    from .app.demo import find_checkpoint

    return find_checkpoint(path)


def load(model: str | os.PathLike, *, expect: dict | None = None):
    """Load a model to predict with -> `emodistill.app.predictor.Predictor`.

    model: a checkpoint folder (or its model.safetensors), a training run folder (its `best/` checkpoint), an
        exported `model.onnx` / `model.engine` (with its sidecar JSON beside it) or an export folder (its artifact).
    expect: preprocessing fields the model must use, e.g. {"num_frames": 8}; a mismatch raises ContractError.

    The Predictor has `.kind` ("checkpoint" | "onnx" | "tensorrt"), `.preprocess`, `.class_names` (C names),
    `.load(clip, wav) -> (video float32 [1,T,3,H,W] in [0,1], audio float32 [1,N])`, `.probs(video, audio,
    modality_mask=None) -> float [C]`. Raises FileNotFoundError, ContractError, CheckpointError.
    """
    from .app.predictor import Predictor

    predictor = Predictor(_resolve(model), expect)
    logger.info("loaded %s (%s, %d classes)", predictor.path, predictor.kind, len(predictor.class_names))
    return predictor


def _predictor(model):  # a Predictor (or alike: preprocess, class_names, probs) as is; a path is loaded
    return load(model) if isinstance(model, (str, os.PathLike)) else model


def predict(model, clip: str | os.PathLike, *, audio: str | os.PathLike | None = None) -> dict:
    """Emotion probabilities for one clip -> the dict `emodistill predict --json` prints:
    {"clip": str, "model": str, "backend": str, "prediction": top class name,
     "probabilities": {class name: float, ...} (highest first, sums to 1), "budget": str (artifacts with a verdict)}.

    model: a Predictor from `load` (reuse it for many clips) or anything `load` takes.
    clip: a video file; decoded exactly as in training (the model's preprocessing contract).
    audio: an audio file paired with a video-only clip (default: the clip's own audio track).
    Raises FileNotFoundError, DecodeError (an unreadable clip).
    """
    return _predictor(model)(clip, audio)


def _positive(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


def stream(model, source: str | os.PathLike, *, window: float | None = None, hop: float | None = None,
           out: str | os.PathLike | None = None, **options) -> dict:
    """An emotion timeline over a long video or a live source -> the dict `predict --stream` writes as
    timeline.json: {"source", "class_names", "preprocess", "options", "face_tracking", "mask_input",
    "stats": {windows, video_frames, corrupt_packets, ended_by, warnings, ...},
    "timing": {stages: {decode|face|preprocess|audio|model|total|host: {p50_ms, p95_ms, ...}}, windows_per_s,
    realtime_factor, keeps_up, hop_s, ...}, "windows": [{index, start, end, top_emotion, confidence, face_found,
    audio_masked, modalities, probabilities: {class: float}, timing_ms}, ...], "model", "backend"}.

    model: a Predictor or anything `load` takes. source: a video file of any length, "-" (stdin), a device
        (/dev/video0) or a URL (rtsp://...).
    window: seconds per window: the model's clip length (`preprocess.clip_seconds`, the default), nothing else.
    hop: seconds between window starts (default `StreamOptions.hop`, 0.5), snapped to the contract's frame step.
    out: a folder to also write timeline.json, timeline.csv and timeline.png into (default: nothing written).
    options: the other `emodistill.app.stream.StreamOptions` fields: face_every, face_detect ("auto" | "on" |
        "off"), min_face_share, silence_db, max_seconds, format (demuxer), audio_lag.
    Raises ValueError (hop or window not > 0, a window that is not the model's), TypeError (unknown option),
    DecodeError (no video stream). Ctrl-C / a kernel interrupt ends the run early with the windows so far.
    """
    from dataclasses import fields

    from .app.stream import StreamOptions, run_stream
    from .app.timeline import CsvSink, plot_timeline
    from .core.utils import write_json_atomic

    allowed = sorted(f.name for f in fields(StreamOptions) if f.name != "hop")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"stream() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; allowed: "
                        f"window, hop, out, {', '.join(allowed)}")
    opts = StreamOptions(**options, **({} if hop is None else {"hop": _positive("hop", hop)}))
    window = None if window is None else _positive("window", window)
    predictor = _predictor(model)
    clip_s = predictor.preprocess.clip_seconds
    if window is not None and abs(window - clip_s) > 1e-6:
        raise ValueError(f"window={window:g} s: {getattr(predictor, 'path', 'the model')} scores windows of its "
                         f"clip length, {clip_s:g} s (pass window={clip_s:g} or leave it out; hop sets the spacing)")
    sink = None
    if out is not None:
        (out := Path(out)).mkdir(parents=True, exist_ok=True)
        sink = CsvSink(out / "timeline.csv", list(predictor.class_names))
    try:
        result = run_stream(str(source), predictor, opts, sink)
    finally:
        if sink is not None:
            sink.close()
    result |= {"model": str(getattr(predictor, "path", "")), "backend": getattr(predictor, "kind", None)}
    logger.info("%s: %d windows (%s)", source, result["stats"]["windows"], result["stats"]["ended_by"])
    if out is not None:
        result["outputs"] = {"csv": "timeline.csv", "plot": "timeline.png"}
        write_json_atomic(out / "timeline.json", result)
        plot_timeline(result, out / "timeline.png")
        logger.info("wrote %s, timeline.csv, timeline.png", out / "timeline.json")
    return result


def _export_parser():
    """`emodistill export`'s own parser (export.run.add_export_arguments), raising ValueError instead of exiting."""
    import argparse

    from .export.run import add_export_arguments

    class Parser(argparse.ArgumentParser):
        def error(self, message):
            raise ValueError(f"export_model: {message}")

    parser = Parser(prog="emodistill.api.export_model", add_help=False)
    add_export_arguments(parser)
    return parser


def _export_argv(parser, given: dict) -> list[str]:
    """Keyword arguments -> the command line they stand for; None = the parser's default."""
    import argparse

    # a retired spelling's dest (latency_seconds, ...) still works; where a current flag shares the dest, it wins
    flags = sorted((a for a in parser._actions if a.option_strings), key=lambda a: a.help is not argparse.SUPPRESS)
    actions = {a.dest: a for a in flags}
    given = dict(given)
    budget_set = given.pop("budget_set", None)  # the API's name for the budget's --set overrides
    if budget_set is not None:
        items = [f"{k}={v}" for k, v in budget_set.items()] if isinstance(budget_set, dict) else (
            [budget_set] if isinstance(budget_set, str) else list(budget_set))
        given["overrides"] = [*(given.get("overrides") or []), *(f"budget.{item}" for item in items)]
    unknown = sorted(set(given) - set(actions))
    if unknown:
        current = {a.dest for a in flags if a.help is not argparse.SUPPRESS} | {"budget_set"}
        raise TypeError(f"export_model() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                        f"allowed: {', '.join(sorted(current))}")
    argv: list[str] = []
    for dest, value in ((k, v) for k, v in given.items() if v is not None):  # None: the command's default
        action, flag = actions[dest], max(actions[dest].option_strings, key=len)
        if action.nargs == 0:  # store_true
            if not isinstance(value, bool):
                raise TypeError(f"export_model(): {dest} is a switch, pass True or False, got {value!r}")
            argv += [flag] if value else []
        elif isinstance(action.default, list):  # append: e.g. overrides=["budget.batch_size=16"]
            items = [f"{k}={v}" for k, v in value.items()] if isinstance(value, dict) else (
                [value] if isinstance(value, str) else list(value))
            argv += [x for item in items for x in (flag, str(item))]
        else:
            argv += [flag, str(value)]  # a Path too; argparse converts and checks the choices
    return argv


def export_model(checkpoint: str | os.PathLike, *, out: str | os.PathLike, format: str = "onnx",
                 precision: str = "fp32", budget: str | None = None, data: str | os.PathLike | None = None,
                 force: bool = False, **options) -> dict:
    """Export a checkpoint and check it against a budget, as `emodistill export` does -> the sidecar dict
    (`out/model.json`): {"artifact", "format", "precision", "sha256", "size_bytes", "input_contract",
    "source_checkpoint", "export", "parity", "accuracy" (with `data`), "ort_cpu_latency" (onnx),
    "budget": {"spec", "profile", "verdict": {"passed", "figures": {p50_ms, p95_ms, vram_mb, ...}, ...}},
    "tolerances", "trtexec", "versions", "created", "command"}.

    checkpoint: a checkpoint folder, its model.safetensors or a run folder (its best/). out: the output folder.
    format: "onnx" | "tensorrt". precision: "fp32" | "fp16" | "int8".
    budget: a budget name (`emodistill budgets`, e.g. "rtx3050-laptop-4gb-realtime"), a budget YAML or a hardware
        profile name (default: the command's, emodistill.core.cli_args.DEFAULT_BUDGET). A budget made for another
        precision needs budget_set={"precision": precision}.
    data: a dataset root for real-clip parity, INT8 calibration and test accuracy (default: random inputs).
    force: replace an export in `out` (once the new one is complete).
    options: the command's other options by their Python names, e.g. budget_set={"max_p95_ms": 20} (the command's
        --set budget.max_p95_ms=20), int8_mode="dynamic", trt_backend="rtx", runs=10, parity_samples=8, max_eval=100,
        onnx=...;
        an omitted one keeps the command's default (the defaults live in emodistill.export.run only).
    Raises TypeError (unknown keyword, listing the allowed ones), ValueError (a bad value or a budget for another
    precision), UnknownNameError (a budget name that does not exist), FileExistsError (`out` holds an export and
    force is False), ExportError (exit code 3, 4 or 5; `.code`, `.sidecar`).
    """
    from .core.utils import read_json
    from .export import run as export_run

    parser = _export_parser()
    ckpt = _resolve(checkpoint, artifacts=False)
    argv = ["--model", str(ckpt), "--out", os.fspath(out)] + _export_argv(
        parser, {"format": format, "precision": precision, "budget": budget, "data": data, "force": force, **options})
    args = parser.parse_args(argv)
    logger.info("emodistill export %s", " ".join(argv))
    lines, errs = _LogLines(logging.INFO, sys.stdout), _LogLines(logging.WARNING, sys.stderr)
    with redirect_stdout(lines), redirect_stderr(errs):
        try:
            code = int(export_run.run_export(args) or 0)
        finally:
            lines.flush()
            errs.flush()
    out = Path(out)
    if code != 0:
        sidecar = read_json(out / export_run.SIDECAR, "export sidecar") if code in (3, 4) else None
        raise ExportError(code, out, sidecar)
    return read_json(out / export_run.SIDECAR, "export sidecar")


def read_report(path: str | os.PathLike) -> dict:
    """Read what a command wrote -> its JSON as a dict, unchanged:

    - a compare report (`emodistill compare --out` folder or its report.json): {"created", "machine", "data",
      "budget", "regime", "summary": {teacher_accuracy, student_accuracy, accuracy_retained, compression,
      cpu_speedup, kd_gain_points, ...}, "models": [{name, role, kind, metrics: {accuracy, uar, ...}, params,
      cpu_latency, rtx3050, ...}, ...]};
    - an export (`emodistill export --out` folder, its model.json, or the model.onnx / model.engine itself): the
      sidecar, as `export_model` returns it;
    - a timeline (`predict --stream --out` folder or its timeline.json): as `stream` returns it.

    A folder is searched for report.json, model.json, timeline.json, in this order. Raises FileNotFoundError
    (none there), ValueError (not a JSON object), ContractError (an artifact without its sidecar).
    """
    from .core.utils import read_json

    p = Path(path)
    if not p.exists() or p.is_dir() and not any((p / n).is_file() for n in REPORT_FILES):
        raise FileNotFoundError(f"{p}: no report there (a file, or a folder holding {', '.join(REPORT_FILES)})")
    if p.is_dir():
        p = next(p / n for n in REPORT_FILES if (p / n).is_file())
    elif p.suffix in (".onnx", ".engine"):
        from .app.predictor import find_sidecar

        p = find_sidecar(p)
    data = read_json(p, "report")
    if not isinstance(data, dict):
        raise ValueError(f"{p}: not a report (a JSON {type(data).__name__}, not an object)")
    return data
