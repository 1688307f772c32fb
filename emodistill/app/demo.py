"""`emodistill demo`: from nothing to a budget-checked student and a comparison report, on a CPU.

Stages (each one is the CLI command a user would run, so the demo doubles as a worked example):
synthesize the data set -> fine-tune `teacher_tiny` -> distill into `student_xs` (+ the CE-only
baseline) -> export ONNX FP32 + INT8 and a TensorRT for RTX engine (built here for the budget GPU's SM,
no GPU needed) with the RTX 3050 budget check ->
comparison report. A stage whose outputs exist is skipped (its command is recorded in
`<out>/stages/<stage>.json`), so a rerun is cheap; `--force` redoes everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

from ..core.cli_args import DEFAULT_BUDGET, add_budget, add_out
from ..core.utils import int_at_least, write_json_atomic

logger = logging.getLogger(__name__)

TEACHER_CONFIG = "configs/teacher/tiny_synth.yaml"
DISTILL_CONFIG = "configs/distill/demo.yaml"
# `emodistill export` exits 3 when the artifact is fine but over budget: the report shows that verdict.
BUDGET_OK = (0, 3)


def find_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint a training run wrote (`best/` by convention, else the run folder itself)."""
    from ..core.checkpoint import CheckpointError, read_meta  # torch-heavy: not on the CLI's start-up path

    for cand in (run_dir / "best", run_dir / "checkpoint", run_dir):
        try:
            read_meta(cand)
            return cand
        except CheckpointError:
            continue
    raise FileNotFoundError(f"no checkpoint under {run_dir} (looked in best/, checkpoint/ and the folder itself)")


class Stages:
    """Runs CLI stages in order, skipping those recorded as done (unless forced)."""

    def __init__(self, out: Path, force: bool):
        self.out, self.force = out, force
        self.dir = out / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}

    def run(self, name: str, cmd: list[str], outputs: list[Path], ok_codes: tuple[int, ...] = (0,)) -> None:
        marker = self.dir / f"{name}.json"
        if not self.force and marker.exists() and all(p.exists() for p in outputs):
            print(f"[demo] {name}: done already (outputs exist; --force redoes it)", flush=True)
            self.timings[name] = json.loads(marker.read_text()).get("seconds", 0.0)
            return
        marker.unlink(missing_ok=True)
        if cmd[0] in ("teacher", "distill"):  # a stage rerun starts over: its old run moves to replaced-<time>/
            cmd = [*cmd, "--force"]
        pretty = " ".join(shlex.quote(c) for c in ["emodistill", *cmd])
        print(f"\n[demo] {name}: {pretty}", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.run([sys.executable, "-m", "emodistill.app.cli", *cmd]).returncode
        seconds = time.perf_counter() - t0
        if rc not in ok_codes:
            raise RuntimeError(f"demo stage '{name}' failed (exit {rc}); rerun it alone to see why: {pretty}")
        missing = [str(p) for p in outputs if not p.exists()]
        if missing:
            raise RuntimeError(f"demo stage '{name}' finished but did not write {missing}")
        self.timings[name] = seconds
        write_json_atomic(marker, {"command": pretty, "seconds": seconds, "outputs": [str(p) for p in outputs]})
        print(f"[demo] {name}: {seconds:.0f} s", flush=True)


def run_demo(out: str | Path = "outputs/demo", size: str = "default", epochs: int | None = None,
             force: bool = False, budget: str = DEFAULT_BUDGET, seed: int = 0, tensorrt: bool | None = None) -> dict:
    out = Path(out)
    st = Stages(out, force)
    data = out / "data"
    sets = (lambda *kv: [a for k in kv for a in ("--set", k)])
    ep = [f"train.epochs={epochs}"] if epochs else []

    st.run("synth", ["data", "synth", "--out", str(data), "--size", size, "--seed", str(seed)],
           [data])
    st.run("teacher", ["teacher", "train", "--config", TEACHER_CONFIG,
                       *sets(f"data.root={data}", f"output_dir={out / 'teacher'}", f"seed={seed}", *ep)],
           [out / "teacher"])
    teacher = find_checkpoint(out / "teacher")
    common = [f"data.root={data}", f"teacher.checkpoint={teacher}", f"seed={seed}", *ep]
    st.run("distill_kd", ["distill", "--config", DISTILL_CONFIG, *sets(*common, f"output_dir={out / 'student_kd'}")],
           [out / "student_kd"])
    st.run("distill_ce", ["distill", "--config", DISTILL_CONFIG,
                          *sets(*common, "distill.kd=false", f"output_dir={out / 'student_ce'}")],
           [out / "student_ce"])
    student = find_checkpoint(out / "student_kd")
    onnx_files = []
    for precision in ("fp32", "int8"):
        dest = out / "export" / f"onnx_{precision}"
        st.run(f"export_{precision}", ["export", "--model", str(student), "--format", "onnx", "--precision",
                                       precision, "--budget", budget, "--set", f"budget.precision={precision}",
                                       "--data", str(data), "--out", str(dest), "--force"],
               [dest / "model.onnx"], ok_codes=BUDGET_OK)
        onnx_files.append(dest / "model.onnx")
    if tensorrt is None:
        tensorrt = _tensorrt_available()
    engines = []
    if tensorrt:  # TensorRT for RTX: an engine for the budget's GPU, built ahead of time here (seconds, no GPU)
        prec = _budget_precision(budget)
        dest = out / "export" / f"tensorrt_{prec}"
        reuse = ["--onnx", str(onnx_files[0])] if prec in ("fp32", "int8") else []  # the verified fp32 graph
        st.run("export_tensorrt", ["export", "--model", str(student), "--format", "tensorrt", "--precision",
                                   prec, "--budget", budget, "--set", f"budget.precision={prec}", "--data", str(data),
                                   *reuse, "--out", str(dest), "--force"],
               [dest / "model.engine"], ok_codes=BUDGET_OK)
        engines.append(dest / "model.engine")
    else:
        print("\n[demo] export_tensorrt: skipped (needs tensorrt-rtx: pip install tensorrt-rtx)")
    st.run("compare", ["compare", "--teacher", str(teacher), "--student", str(student),
                       "--baseline", str(find_checkpoint(out / "student_ce")), "--onnx", *map(str, onnx_files),
                       *(["--engine", *map(str, engines)] if engines else []),
                       "--data", str(data), "--out", str(out / "report"), "--budget", budget],
           [out / "report" / "report.json"])
    report = json.loads((out / "report" / "report.json").read_text())
    report["demo_timings_s"] = st.timings
    return report


def _tensorrt_available() -> bool:
    try:
        import tensorrt_rtx  # noqa: F401

        return True
    except Exception:
        return False


def _budget_precision(budget: str) -> str:
    """The precision the demo budget names, INT8 (the demo's ONNX INT8 graph) when it names none."""
    from emodistill.export.profiles import load_budget

    return load_budget(budget)[0].precision or "int8"


def _run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    report = run_demo(args.out, size=args.size, epochs=args.epochs, force=args.force, budget=args.budget,
                      seed=args.seed, tensorrt=False if args.no_tensorrt else None)
    s = report["summary"]
    print("\n" + "=" * 72)
    print(f"report: {Path(args.out) / 'report' / 'report.md'}  (plots and report.json beside it)")
    kd = (report.get("regime") or {}).get("student_kd") or {}
    if kd:
        print(f"regime: KD student {kd['labelled_clips']} labelled + {kd['unlabelled_clips']} unlabelled clips; "
              f"CE-only student the same {kd['labelled_clips']} labelled clips only")
    print(f"teacher accuracy {100 * s['teacher_accuracy']:.1f}% | KD student {100 * s['student_accuracy']:.1f}% "
          f"= {100 * s['accuracy_retained']:.1f}% of the teacher | CE-only student "
          f"{100 * s['student_accuracy'] - s.get('kd_gain_points', 0):.1f}% | KD gain "
          f"{s.get('kd_gain_points', float('nan')):+.1f} points")
    for e in report["models"]:
        r = e.get("rtx3050") or {}
        lab = {k: (r.get("labels") or {}).get(k, r.get("mode", "?")) for k in ("p50_ms", "vram_mb")} if r else {}
        verdict = (f"RTX 3050: {r.get('latency_p50_ms', float('nan')):.2f} ms ({lab['p50_ms']}), "
                   f"{r.get('vram_mb', float('nan')):.0f} MB ({lab['vram_mb']}), {'PASS' if r.get('passed') else 'FAIL'}"
                   ) if r and "error" not in r else ""
        print(f"  {e['name']:<20s} acc {100 * e['metrics']['accuracy']:5.1f}%  CPU {e['cpu_latency']['p50_ms']:7.2f} ms  {verdict}")
    print(f"total {time.perf_counter() - t0:.0f} s (stages: "
          + ", ".join(f"{k} {v:.0f}s" for k, v in report["demo_timings_s"].items()) + ")")
    return 0


def register(sub) -> None:
    p = sub.add_parser("demo", help="whole chain on synthetic data: synth, teacher, distill, export, report",
                       description="Try the whole chain on a CPU in about 15 minutes: synthesize a data set, "
                                   "fine-tune a small teacher, distill a student (and a CE-only baseline), export "
                                   "ONNX FP32 + INT8 and a TensorRT for RTX engine with the RTX 3050 budget check, "
                                   "and write the comparison report.\n\n"
                                   "Each stage is the CLI command a user would run (recorded in "
                                   "<out>/stages/<stage>.json); a stage whose outputs exist is skipped, so a rerun "
                                   "is cheap; --force redoes everything.")
    add_out(p, default="outputs/demo", help="folder for every stage's outputs")
    p.add_argument("--size", default="default", choices=["small", "default"], help="synthetic data set size")
    p.add_argument("--epochs", type=int_at_least(1), help="override the epochs of teacher and student training (quick runs)")
    add_budget(p)
    p.add_argument("--seed", type=int, default=0, help="seed for data, teacher and students")
    p.add_argument("--force", action="store_true", help="redo every stage even if its outputs exist")
    p.add_argument("--no-tensorrt", action="store_true", help="skip the TensorRT stage even when available")
    p.set_defaults(func=_run)


__all__ = ["run_demo", "find_checkpoint", "register"]
