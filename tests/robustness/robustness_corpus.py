"""Helpers of the bad-input corpus (tests/robustness): the real CLI, folder hashes, clean-error checks.

Every case runs `emodistill ...` (in this process through `emodistill.app.cli.main`, which is the console script's
entry point, or as a subprocess where the process boundary matters) and checks what a user would see: the exit
code, one line on stderr without a traceback that names the offending file or key, and that nothing the user had
changed (every file's sha256 and mode, before and after).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INPUT_ERROR = 2  # emodistill.core.errors.EXIT_INPUT (literal here: the corpus also runs against older code)


@dataclass
class Result:
    code: int
    out: str
    err: str


def cli(capsys, *argv) -> Result:
    """`emodistill ARGV` in this process (the console script calls the same `main`)."""
    from emodistill.app.cli import main

    capsys.readouterr()
    try:
        code = main([str(a) for a in argv])
    except SystemExit as e:  # argparse usage errors
        code = e.code
    except BaseException as e:  # a traceback would have ended the real command: report it as such
        import traceback

        cap = capsys.readouterr()
        return Result(-1, cap.out, cap.err + "Traceback (most recent call last):\n" + traceback.format_exc()
                      + f"{type(e).__name__}")
    cap = capsys.readouterr()
    return Result(int(code), cap.out, cap.err)


def cli_subprocess(*argv, cwd: Path | None = None, timeout: int = 120) -> Result:
    """`emodistill ARGV` as a user runs it (a fresh interpreter, this checkout's code)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([sys.executable, "-m", "emodistill.app.cli", *map(str, argv)], cwd=cwd or REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return Result(p.returncode, p.stdout, p.stderr)


def snapshot(root: Path) -> dict[str, tuple]:
    """{relative path: (sha256, mode)} of every file and folder under root."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_dir():
            out[rel] = ("dir", p.stat().st_mode)
        else:
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return out


def assert_clean_error(r: Result, *names: str, code: int = INPUT_ERROR) -> None:
    """Exit `code`, no traceback, and one `error:` line that names each of `names` (a file, key or value)."""
    assert "Traceback" not in r.err, r.err[-3000:]
    assert r.code == code, f"exit {r.code}, wanted {code}; stderr: {r.err[-2000:]}"
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.err[-2000:]
    for n in names:
        assert str(n) in lines[0], f"{n!r} not named in: {lines[0]}"
    if os.environ.get("ROBUSTNESS_TABLE"):  # the closing note's table of cases: exit code and message
        import json

        with open(os.environ["ROBUSTNESS_TABLE"], "a") as f:
            f.write(json.dumps({"case": os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0], "code": r.code,
                                "message": lines[0]}) + "\n")


class Unchanged:
    """`with Unchanged(folder): ...` asserts that the block left every file and folder under it as it was."""

    def __init__(self, *roots: Path):
        self.roots = roots

    def __enter__(self):
        self.before = [snapshot(r) for r in self.roots]
        return self

    def __exit__(self, *exc):
        if exc[0] is None:
            for r, b in zip(self.roots, self.before):
                after = snapshot(r)
                changed = sorted(k for k in set(b) | set(after) if b.get(k) != after.get(k))
                assert not changed, f"{r}: changed {changed[:10]}"
        return False


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


def crash_in_worker(video_path, audio_path, num_frames, *rest):
    """Stands in for a codec that segfaults on one file: the worker dies; the parent must never decode it."""
    if os.path.basename(video_path) == "01-01-05-01-01-01-01.mp4":
        # No environment variables: a forkserver started by an earlier test keeps that test's environment.
        if mp.parent_process() is None:  # the calling (main) process
            Path(str(video_path) + ".decoded-in-main").write_text("decoded in the main process")
            return {"error": "decoded in the main process"}
        os._exit(11)
    from emodistill.core.data.check import inspect_clip

    return inspect_clip(video_path, audio_path, num_frames, *rest)


OLD_EXPORT = {"model.onnx": "an older export", "model.json": "{}", "verdict.txt": "old verdict",
              "model.engine": "an older engine", "notes.md": "the user's notes"}

TOY_RECIPE = {
    "toy": {"train": 16, "val": 8, "test": 8},
    "teacher": {"name": "toy_teacher"},
    "student": {"name": "toy_student"},
    "distill": {"losses": {"ce": {}, "kd": {"args": {"temperature": 4.0}}}},
    "train": {"epochs": 1, "batch_size": 8, "eval_batch_size": 8, "threads": 1, "eval_teacher": False,
              "eval_missing": False},
}


def toy_recipe(path: Path, output_dir: Path, **sections) -> Path:
    """A tiny distill recipe on the toy set (seconds on a CPU)."""
    import yaml

    cfg = {**TOY_RECIPE, **sections, "output_dir": str(output_dir)}
    path.write_text(f"# emodistill distill --config {path}\n" + yaml.safe_dump(cfg))
    return path
