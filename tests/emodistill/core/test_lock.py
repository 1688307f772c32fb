"""emodistill.core.lock: one writer per folder, between real processes (issue 25)."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from emodistill.core.errors import EXIT_INPUT, exit_code, one_line
from emodistill.core.lock import LOCK_NAME, FolderLockedError, folder_lock, read_holder

pytestmark = pytest.mark.skipif(os.name == "nt", reason="the Windows path is best effort (msvcrt), untested here")

REPO = Path(__file__).resolve().parents[3]
HOLD = textwrap.dedent("""
    import sys, time
    from emodistill.core.lock import folder_lock
    with folder_lock(sys.argv[1], what=sys.argv[2]):
        print("locked", flush=True)
        time.sleep(float(sys.argv[3]))
""")


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "RANK": "0"}


def hold(folder: Path, what: str = "run", seconds: float = 60) -> subprocess.Popen:
    """Another process that holds `folder`'s lock (until killed or `seconds` pass)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), what, str(seconds)], stdout=subprocess.PIPE,
                         text=True, env=_env())
    assert p.stdout.readline().strip() == "locked"
    return p


def stop(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait(timeout=30)


def test_a_second_process_is_refused_at_once_and_changes_nothing(tmp_path):
    folder = tmp_path / "runs" / "x"
    p = hold(folder)
    try:
        path = folder / LOCK_NAME
        before = (path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns)
        t0 = time.perf_counter()
        with pytest.raises(FolderLockedError) as e:
            with folder_lock(folder):
                pytest.fail("entered a folder another process holds")
        assert time.perf_counter() - t0 < 2  # not waiting for the holder
        assert (path.read_bytes(), path.stat().st_mode, path.stat().st_mtime_ns) == before
        assert sorted(os.listdir(folder)) == [LOCK_NAME]
        msg = one_line(e.value)
        assert msg.startswith(f"{folder}: another emodistill command is writing here (pid {p.pid} on host "
                              f"{socket.gethostname()}, started 20"), msg
        assert msg.endswith("); wait for it to finish or choose another output_dir"), msg
        assert exit_code(e.value) == EXIT_INPUT
        assert e.value.holder["pid"] == p.pid
    finally:
        stop(p)


def test_the_lock_file_names_its_holder(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/emodistill", "export", "--out", "a b"])
    with folder_lock(tmp_path, what="export") as path:
        holder = json.loads(path.read_text())
        assert read_holder(tmp_path) == holder
    assert holder["pid"] == os.getpid()
    assert holder["host"] == socket.gethostname()
    assert holder["command"] == "emodistill export --out 'a b'"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", holder["started"])
    assert holder["what"] == "export"
    with folder_lock(tmp_path, command="emodistill distill --config r.yaml") as path:
        assert json.loads(path.read_text())["command"] == "emodistill distill --config r.yaml"


def test_released_after_the_block_leaving_no_file(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "metrics.json").write_text("{}")
    with folder_lock(folder) as path:
        assert path.exists()
    assert sorted(os.listdir(folder)) == ["metrics.json"]
    with pytest.raises(ZeroDivisionError):  # released on an error too
        with folder_lock(folder):
            1 / 0
    assert sorted(os.listdir(folder)) == ["metrics.json"]
    stop(hold(folder, seconds=0))  # another process can take it now


def test_folders_it_created_are_removed_when_left_empty(tmp_path):
    with pytest.raises(ValueError):  # e.g. a config error found after the lock was taken
        with folder_lock(tmp_path / "a" / "b" / "c"):
            assert (tmp_path / "a" / "b" / "c").is_dir()
            raise ValueError("bad config")
    assert os.listdir(tmp_path) == []
    with folder_lock(tmp_path / "a" / "b"):
        (tmp_path / "a" / "b" / "metrics.json").write_text("{}")
    assert os.listdir(tmp_path / "a" / "b") == ["metrics.json"]


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "out").write_text("x")
    with pytest.raises(NotADirectoryError, match="out is a file, not a folder"):
        with folder_lock(tmp_path / "out", what="export"):
            pass
    assert (tmp_path / "out").read_text() == "x"


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path, caplog):
    p = hold(tmp_path)
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert read_holder(tmp_path)["pid"] == p.pid  # the file stays; the kernel dropped the lock
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        with folder_lock(tmp_path) as path:
            assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"left by pid {p.pid} (no longer running); taking it over" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("content,said", [
    ('{"pid": 4242, "host": "elsewhere", "command": "emodistill distill", "started": "2026-01-01T00:00:00Z"}',
     "left by pid 4242 (on host elsewhere; its lock was free"),
    ("not json \x00", "unreadable lock file"),
    ('{"pid": "x"}', "unreadable lock file"),
])
def test_a_stale_lock_from_another_host_or_unreadable_is_taken_over(content, said, tmp_path, caplog):
    (tmp_path / LOCK_NAME).write_text(content)
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        with folder_lock(tmp_path):
            pass
    assert said in caplog.text and "taking it over" in caplog.text
    assert not (tmp_path / LOCK_NAME).exists()


def test_an_empty_lock_file_is_taken_over_silently(tmp_path, caplog):
    (tmp_path / LOCK_NAME).write_text("")
    with caplog.at_level(logging.WARNING, logger="emodistill"):
        with folder_lock(tmp_path):
            pass
    assert "taking it over" not in caplog.text


def test_ranks_other_than_0_take_no_lock(tmp_path, monkeypatch):
    p = hold(tmp_path)
    try:
        monkeypatch.setenv("RANK", "1")
        with folder_lock(tmp_path) as path:  # no-op: rank 0 of the same launch holds it
            assert path is None
        with folder_lock(tmp_path / "new") as path:
            assert path is None and not (tmp_path / "new").exists()
        monkeypatch.setenv("RANK", "0")
        with pytest.raises(FolderLockedError):
            with folder_lock(tmp_path):
                pass
    finally:
        stop(p)


def test_not_reentrant_in_one_process(tmp_path):
    with folder_lock(tmp_path):
        with pytest.raises(FolderLockedError, match=f"pid {os.getpid()}"):
            with folder_lock(tmp_path):
                pass


def test_a_lock_on_a_file_just_unlinked_by_its_releasing_holder_does_not_count(tmp_path, monkeypatch):
    """Release unlinks the file while still holding it. A process that opened the file just before (B) and locks it
    just after holds a lock on a file no longer in the folder, while a third (C) locks the new one: B must see
    that and try again (then C refuses it), never believe it holds the folder too."""
    import emodistill.core.lock as lock

    a = subprocess.Popen([sys.executable, "-c", HOLD.replace("time.sleep(float(sys.argv[3]))", "input()"),
                          str(tmp_path), "run", "0"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                         env=_env())
    assert a.stdout.readline().strip() == "locked"
    real, others = lock._try_lock, []

    def between_open_and_lock(fd):
        if not others:  # B has opened A's file: A releases (unlink, unlock), C takes the folder
            a.communicate("\n", timeout=30)
            others.append(hold(tmp_path))
        return real(fd)

    monkeypatch.setattr(lock, "_try_lock", between_open_and_lock)
    try:
        with pytest.raises(FolderLockedError) as e:
            with folder_lock(tmp_path):
                pytest.fail("two holders of one folder")
        assert e.value.holder["pid"] == others[0].pid
    finally:
        stop(a)
        for p in others:
            stop(p)
