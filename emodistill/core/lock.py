"""One writer per folder: an exclusive lock on a run / export / data folder for a command's whole life.

    with folder_lock(cfg.output_dir, what="run"):
        ...  # check the folder, write into it

The lock is `fcntl.flock(LOCK_EX | LOCK_NB)` (POSIX; `msvcrt.locking` on Windows, best effort) on
`<folder>/.emodistill.lock`, whose content is JSON naming the holder: pid, host, command line, start time (UTC).

- **Refused at once.** A second writer does not wait: it raises `FolderLockedError` (exit code 2) naming the folder
  and the holder, e.g. `runs/x: another emodistill command is writing here (pid 1234 on host h, started
  2026-12-03T11:40:00Z: emodistill distill --config ...); wait for it to finish or choose another output_dir`.
  A refused command changes nothing: the holder's lock file is only read, never rewritten.
- **Stale locks.** The kernel drops a flock when its process dies (even by SIGKILL), so a lock file left by a killed
  command is simply locked again; its recorded holder is then gone (or on another host, or the file unreadable) and
  the new command takes it over with a warning `... left by pid N (no longer running); taking it over`.
- **No file left behind.** On release the file is unlinked while still locked, then unlocked. A command that opened
  the old file just before the unlink and locks it just after would hold a lock on a file no longer in the folder:
  after locking, `folder_lock` checks that the path still names the file it locked (same inode) and otherwise
  opens the path again, so two holders never coexist.
- **The folder.** `folder_lock` creates the folder (and missing parents) when it does not exist: every locked
  command writes that folder anyway. When the command then leaves it empty (refused for a config error, a failed
  export), the folders it created are removed on release, so a refused command leaves no trace.
- **Distributed runs.** Under `accelerate launch` / torchrun the processes of one run share its folder: only the
  process of global rank 0 (env `RANK`, default 0) takes the lock; the others get a no-op. A second launch is
  refused by its rank 0, and the launcher ends the other ranks.
- Readers (`predict`, `compare`) take no lock. The lock is advisory: it keeps emodistill commands apart, not other
  programs. flock on network file systems (NFS) depends on the server; on a local disk it is exact.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from .errors import InputError, writing_into

logger = logging.getLogger(__name__)

LOCK_NAME = ".emodistill.lock"
# what a command writes -> the option that names another folder (the refusal's advice)
CHOOSE = {"run": "output_dir", "export": "--out", "data": "--out", "cache": "cache_dir"}
_WIN_OFFSET = 1 << 20  # Windows locks a byte range: lock one byte past the JSON so the content stays readable


class FolderLockedError(InputError, RuntimeError):
    """Another emodistill command holds the folder's lock (exit code 2: nothing was changed)."""

    def __init__(self, message: str, folder: Path, holder: dict | None):
        super().__init__(message)
        self.folder, self.holder = folder, holder


def _command_line() -> str:
    argv = list(sys.argv) or ["?"]
    if Path(argv[0]).name in ("emodistill", "cli.py", "__main__.py"):
        argv[0] = "emodistill"
    return " ".join(shlex.quote(a) for a in argv)


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        return 0


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a pid of another user's process counts)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would terminate the process on Windows
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        ctypes.windll.kernel32.CloseHandle(handle)
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_lock(fd: int) -> bool:
    """Lock `fd` without waiting -> False when another process holds it."""
    if os.name == "nt":
        import msvcrt

        os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def _unlock(fd: int) -> None:
    if os.name == "nt":
        import msvcrt

        with contextlib.suppress(OSError):
            os.lseek(fd, _WIN_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(fd, fcntl.LOCK_UN)


def _read(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    chunks = []
    while block := os.read(fd, 1 << 16):
        chunks.append(block)
        if sum(map(len, chunks)) > 1 << 20:
            break
    return b"".join(chunks)


def _parse(raw: bytes) -> dict | None:
    try:
        holder = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def read_holder(folder: str | os.PathLike) -> dict | None:
    """The recorded holder of `folder`'s lock file (None when there is none or it is unreadable); no lock taken."""
    try:
        return _parse(Path(folder, LOCK_NAME).read_bytes())
    except OSError:
        return None


def _describe(holder: dict | None) -> str:
    if not holder:
        return "holder unknown: its lock file is empty or unreadable"
    parts = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
    return f"{parts}: {holder['command']}" if holder.get("command") else parts


def _refusal(folder: Path, fd: int, hint: str) -> FolderLockedError:
    """The error naming the holder; its content may still be on its way (locked, not yet written): wait briefly."""
    holder = None
    for _ in range(20):
        holder = _parse(_read(fd))
        if holder:
            break
        time.sleep(0.05)
    return FolderLockedError(f"{folder}: another emodistill command is writing here ({_describe(holder)}); "
                             f"wait for it to finish or choose another {hint}", folder, holder)


def _take_over_note(folder: Path, raw: bytes) -> None:
    """Log what the lock file that was just locked again says about its previous holder (content = a stale lock)."""
    if not raw.strip():
        return
    path = folder / LOCK_NAME
    holder = _parse(raw)
    if holder is None or not isinstance(holder.get("pid"), int):
        logger.warning("%s: unreadable lock file of an earlier command (its lock was free); taking it over", path)
        return
    pid, host = holder["pid"], holder.get("host")
    if host and host != socket.gethostname():
        why = (f"on host {host}; its lock was free: it no longer runs, or this file system does not share "
               "locks between hosts")
    elif pid_alive(pid) and pid != os.getpid():
        why = "whose lock was free: that process no longer holds it"
    else:
        why = "no longer running"
    logger.warning("%s: lock file left by pid %d (%s); taking it over", path, pid, why)


def _missing_dirs(folder: Path) -> list[Path]:
    """The folder and its ancestors that do not exist yet, innermost first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    return missing


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, what: str = "run", *, hint: str | None = None,
                command: str | None = None) -> Iterator[Path | None]:
    """Hold `folder`'s exclusive lock for the block -> the lock file (None on a rank other than 0: no lock).

    `what`: "run" (a training output_dir), "export" (--out), "data" (a folder data synth writes), "cache"; it is
    recorded in the lock file and picks the advice of the refusal (`hint` overrides it). Raises FolderLockedError
    when another command holds it, NotADirectoryError when `folder` is a file. Not re-entrant: a second
    `folder_lock` of the same folder in the same process is refused too.
    """
    if _rank() != 0:
        yield None
        return
    folder = Path(folder)
    hint = hint or CHOOSE.get(what, "folder")
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"{folder} is a file, not a folder (choose another {hint})")
    created = _missing_dirs(folder)
    path = folder / LOCK_NAME
    try:
        fd = _acquire(folder, path, hint)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        _take_over_note(folder, _read(fd))
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": command or _command_line(),
                  "started": _utc_now(), "what": what}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, (json.dumps(holder) + "\n").encode())
    except BaseException:
        _release(fd, path, created)
        raise
    writing_into(folder)  # a full disk names this folder even when the failing write does not
    try:
        yield path
    finally:
        _release(fd, path, created)


def _acquire(folder: Path, path: Path, hint: str) -> int:
    """Open and lock `path` -> its fd; raises FolderLockedError when another process holds it."""
    for _ in range(100):  # each retry follows a release that unlinked the file (or removed the folder) meanwhile
        folder.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_BINARY", 0), 0o666)
        except FileNotFoundError:
            continue
        try:
            locked = _try_lock(fd)
            if not locked:
                raise _refusal(folder, fd, hint)
            try:
                if os.name == "nt" or os.path.samestat(os.fstat(fd), os.stat(path)):
                    return fd
            except FileNotFoundError:
                pass
            # locked a file that a releasing holder had just unlinked: lock the one in the folder now
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise RuntimeError(f"{path}: could not lock it (the file kept being replaced)")


def _release(fd: int, path: Path, created: list[Path]) -> None:
    """Empty and unlink the lock file while still holding it, unlock, and remove the folders `folder_lock` created
    when they are empty."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)  # where the unlink fails (Windows: an open file), the next holder finds no stale content
    with contextlib.suppress(OSError):
        path.unlink()
    try:
        _unlock(fd)
    finally:
        os.close(fd)
    _remove_empty(created)


def _remove_empty(created: list[Path]) -> None:
    for d in created:  # innermost first; a folder the command wrote into is not empty and stays
        try:
            d.rmdir()
        except OSError:
            break


__all__ = ["LOCK_NAME", "FolderLockedError", "folder_lock", "read_holder", "pid_alive"]
