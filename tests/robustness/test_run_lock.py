"""Issue 25: two commands writing into one folder at once. The second is refused at once (exit 2, naming the
holder), changes nothing, and the first finishes as if alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from robustness_corpus import REPO, TOY_RECIPE, Unchanged, assert_clean_error, cli, toy_recipe

from emodistill.core.lock import LOCK_NAME, read_holder

pytestmark = pytest.mark.skipif(os.name == "nt", reason="SIGSTOP / SIGCONT")

ENV = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
ENV.pop("RANK", None)


def wait_for_holder(folder: Path, proc: subprocess.Popen, timeout: float = 120) -> dict:
    t0 = time.monotonic()
    while (holder := read_holder(folder)) is None:
        assert proc.poll() is None, f"exited {proc.returncode} before locking {folder}"
        assert time.monotonic() - t0 < timeout, f"no lock in {folder} after {timeout} s"
        time.sleep(0.05)
    return holder


def test_a_second_distill_into_a_running_run_folder_is_refused(tmp_path, capsys):
    """The repro of issue 25: the same toy recipe started twice; B trained into A's folder and mixed two runs."""
    work = tmp_path / "runs"
    out = work / "run"
    recipe = toy_recipe(tmp_path / "toy.yaml", out, train={**TOY_RECIPE["train"], "epochs": 2})
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "emodistill.app.cli", "distill", "--config", str(recipe)],
                                 cwd=REPO, env=ENV, stdout=log, stderr=subprocess.STDOUT)
    try:
        holder = wait_for_holder(out, first)
        assert holder["pid"] == first.pid
        os.kill(first.pid, signal.SIGSTOP)  # A holds the folder and writes nothing while B tries
        try:
            with Unchanged(work):
                r = cli(capsys, "distill", "--config", recipe)
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert_clean_error(r, f"{out}: another emodistill command is writing here (pid {first.pid} on host",
                           f"emodistill distill --config {recipe}", "choose another output_dir")
        assert first.wait(timeout=300) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert {p.name for p in out.iterdir()} >= {"best", "metrics.json", "state"}
    assert not (out / LOCK_NAME).exists()  # released and removed on a clean exit


HOLD = textwrap.dedent("""
    import sys, time
    from emodistill.core.lock import folder_lock
    with folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def held(tmp_path):
    """A folder with something in it whose lock another process holds -> (folder, holder pid)."""
    folder = tmp_path / "busy"
    folder.mkdir()
    (folder / "notes.md").write_text("the holder's files")
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert p.stdout.readline().strip() == "locked"
        yield folder, p.pid
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("command", ["teacher train", "export", "data synth"])
def test_other_writers_are_refused_by_a_held_folder(command, held, checkpoint, dataset, tmp_path, capsys):
    folder, pid = held
    argv = {"teacher train": ["teacher", "train", "--config", "configs/teacher/tiny_synth.yaml", "--set",
                              f"data.root={dataset}", "--set", f"output_dir={folder}"],
            "export": ["export", "--model", checkpoint, "--format", "onnx", "--out", folder],
            "data synth": ["data", "synth", "--out", folder, "--size", "small", "--actors", "3"]}[command]
    with Unchanged(tmp_path):
        r = cli(capsys, *argv)
    hint = "output_dir" if command == "teacher train" else "--out"
    assert_clean_error(r, f"{folder}: another emodistill command is writing here (pid {pid} on host",
                       f"choose another {hint}")
