"""Preprocessed clip cache: decode once, read many times.

Layout: `<cache_dir>/v<CACHE_VERSION>/<preprocess hash>/<key[:2]>/<key>.safetensors` holding
    video uint8 [T, S, S, 3] RGB and audio int16 [N] (16-bit like the source wav),
with the decode info (source metadata, crop box, warnings) as JSON in the safetensors metadata.
A file that cannot be decoded leaves `<key>.bad.json` with the reason, so later builds skip it
without decoding it again (and still report it).

The key hashes the *content* of the video and audio files plus every Preprocess field. Content is
hashed as sha256(size, first 64 KiB, last 64 KiB) of each file (the whole file when it is smaller than
128 KiB): reading whole 720p videos on every start would cost more than a build, and size + mtime is
not enough (copies keep mtimes, editors keep sizes). MP4 keeps its sample tables (moov) at the head
or the tail, so a re-encode or an edit changes the hashed bytes; only an in-place overwrite of
middle bytes that keeps size, head and tail would be missed. Renaming a file keeps its key (the label
comes from the name, not the cache).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from ..contract import Preprocess
from ..errors import InputError
from ..utils import atomic_path, stable_hash, write_json_atomic
from .names import Clip

logger = logging.getLogger(__name__)

CACHE_VERSION = 1
HASH_CHUNK = 64 * 1024


def content_hash(path: str | os.PathLike) -> str:
    """sha256 over (size, first 64 KiB, last 64 KiB): a content key that costs <= 128 KiB of reading."""
    size = os.path.getsize(path)
    h = hashlib.sha256(str(size).encode() + b"\0")
    with open(path, "rb") as f:
        if size <= 2 * HASH_CHUNK:
            h.update(f.read())
        else:
            h.update(f.read(HASH_CHUNK))
            f.seek(size - HASH_CHUNK)
            h.update(f.read(HASH_CHUNK))
    return h.hexdigest()


def preprocess_hash(pre: Preprocess) -> str:
    return stable_hash({"cache_version": CACHE_VERSION, "preprocess": pre.model_dump(mode="json")})


def clip_key(clip: Clip, pre: Preprocess) -> str:
    """Stable key of the preprocessed sample: content of its files + preprocessing parameters (+ the segment,
    only for a segment, so that whole-file keys stay what they were)."""
    parts = {"v": CACHE_VERSION, "video": content_hash(clip.video_path),
             "audio": content_hash(clip.audio_path) if clip.audio_path else None,
             "pre": pre.model_dump(mode="json")}
    if clip.start is not None or clip.end is not None:
        parts["segment"] = [clip.start, clip.end]
    return stable_hash(parts)


def default_cache_dir(root: str | os.PathLike) -> Path:
    """<root>/.emodistill_cache; beside the file when `root` is a manifest."""
    root = Path(root)
    return (root.parent if root.is_file() else root) / ".emodistill_cache"


def entry_path(cache_dir: str | os.PathLike, pre: Preprocess, key: str) -> Path:
    return Path(cache_dir) / f"v{CACHE_VERSION}" / preprocess_hash(pre) / key[:2] / f"{key}.safetensors"


def _bad_path(path: Path) -> Path:
    return path.with_suffix(".bad.json")


def write_entry(path: Path, video: np.ndarray, audio: np.ndarray, info: dict) -> None:
    """Store one clip atomically (video uint8 [T,S,S,3], audio float [N] -> int16)."""
    pcm = np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)
    with atomic_path(path) as tmp:
        save_file({"video": np.ascontiguousarray(video, np.uint8), "audio": pcm}, str(tmp),
                  metadata={"info": json.dumps(info, default=str)})


class CacheEntryError(InputError, RuntimeError):
    """A cache file that cannot be read (truncated, overwritten); the message names it."""


def read_entry(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """-> video uint8 [T, S, S, 3], audio int16 [N] (divide by 32768 for [-1, 1) floats)."""
    try:
        with safe_open(str(path), framework="np") as f:
            return f.get_tensor("video"), f.get_tensor("audio")
    except Exception as e:  # SafetensorError, OSError, missing tensor
        raise CacheEntryError(f"corrupt preprocessed-cache entry {path} ({e}); delete it and run "
                              "`emodistill data prepare` again to re-decode its clip") from None


def read_info(path: str | os.PathLike) -> dict:
    try:
        with safe_open(str(path), framework="np") as f:
            return json.loads((f.metadata() or {}).get("info", "{}"))
    except Exception as e:  # SafetensorError, JSONDecodeError, OSError
        raise CacheEntryError(f"corrupt preprocessed-cache entry {path} ({e})") from None


@dataclass
class CacheEntry:
    """A cached sample and what the dataset needs to serve it."""

    key: str
    path: str            # the .safetensors file
    clip: Clip


@dataclass
class CacheReport:
    entries: list[CacheEntry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (source path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)    # (source path, warning)
    hits: int = 0
    decoded: int = 0

    def summary(self) -> str:
        return (f"{len(self.entries)} clips ready ({self.hits} cached, {self.decoded} decoded now), "
                f"{len(self.skipped)} skipped, {len(self.warnings)} warnings")


def _decode_job(video_path: str, audio_path: str | None, pre_json: dict, out: str,
                segment: tuple[float | None, float | None] = (None, None)) -> tuple[str, str | dict]:
    """Worker: decode one clip into the cache. Returns ("ok", info) or ("bad", reason); never raises
    for a bad file (a DecodeError is the file's fault and is remembered in <key>.bad.json)."""
    from .decode import DecodeError, load_clip

    pre = Preprocess.model_validate(pre_json)
    path = Path(out)
    try:
        video, audio, info = load_clip(video_path, audio_path, pre, start=segment[0], end=segment[1])
    except DecodeError as e:
        write_json_atomic(_bad_path(path), {"reason": str(e), "video": video_path, "audio": audio_path})
        return "bad", str(e)
    except Exception as e:  # noqa: BLE001 - unexpected (not cached: may be transient), the build goes on
        return "bad", f"unexpected {type(e).__name__}: {e}"
    info.update(video_path=video_path, audio_path=audio_path)
    write_entry(path, video, audio, info)
    return "ok", info


def _worker_init() -> None:
    cv2 = __import__("cv2")
    cv2.setNumThreads(1)


@contextlib.contextmanager
def _build_lock(cache_dir: Path):
    """Several processes (e.g. torchrun ranks, or two runs on one data set) building the same cache: one decodes,
    the rest wait and hit. This lock blocks rather than refuses (emodistill.core.lock refuses a second writer of a
    run or export folder): a shared cache is meant to be shared. The holder's pid and command are in the file, and
    a waiting process says whom it waits for."""
    import sys

    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / "build.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # no truncation: the holder's line stays readable
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(errors="replace").strip() or "another process"
            logger.info("%s: waiting for %s to finish building this cache", cache_dir, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}: {' '.join(sys.argv)[:300]}\n".encode())
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _cached_info(path: Path) -> dict | None:
    """The info of a readable cache entry; None when absent. A corrupt entry (only this cache wrote it) is
    removed so that its clip is decoded again."""
    if not path.exists():
        return None
    try:
        return read_info(path)
    except CacheEntryError as e:
        logger.warning("%s; decoding its clip again", e)
        path.unlink(missing_ok=True)
        return None


def _remembered(path: Path, clip: Clip) -> str | None:
    """The reason an earlier build could not use this content, in terms of *this* clip's files (the same
    content may have been seen under another name); None when nothing is remembered or the note is unreadable."""
    bad = _bad_path(path)
    if not bad.exists():
        return None
    try:
        note = json.loads(bad.read_text())
        reason = str(note.get("reason", "?"))
    except (ValueError, OSError, AttributeError):
        bad.unlink(missing_ok=True)
        return None
    for old, new in ((note.get("video"), clip.video_path), (note.get("audio"), clip.audio_path)):
        if old and new and old != new:
            reason = reason.replace(str(old), str(new))
    return reason


def build_cache(clips: list[Clip], pre: Preprocess, cache_dir: str | os.PathLike, workers: int = 2,
                progress: bool = True) -> CacheReport:
    """Make sure every clip is in the cache; decode the missing ones with `workers` processes
    (0 = in this process). Bad files are skipped and listed, never fatal."""
    cache_dir = Path(cache_dir)
    report = CacheReport()
    todo: list[tuple[Clip, str, Path]] = []
    with _build_lock(cache_dir):
        for clip in clips:
            try:
                key = clip_key(clip, pre)
            except OSError as e:
                report.skipped.append((clip.video_path, f"cannot read: {e}"))
                continue
            path = entry_path(cache_dir, pre, key)
            info = _cached_info(path)
            if info is not None:
                report.entries.append(CacheEntry(key, str(path), clip))
                report.hits += 1
                for w in info.get("warnings", []):
                    report.warnings.append((clip.video_path, w))
            elif (reason := _remembered(path, clip)) is not None:
                report.skipped.append((clip.video_path, f"{reason} (remembered from an earlier build)"))
            else:
                todo.append((clip, key, path))
        if todo:
            pre_dir = entry_path(cache_dir, pre, "00").parent.parent
            pre_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(pre_dir / "preprocess.json", pre.model_dump(mode="json"))
            logger.info("decoding %d clips into %s (%d cached already, %d workers)", len(todo), pre_dir,
                        report.hits, workers)
            for (clip, key, path), (status, result) in zip(todo, _run_jobs(todo, pre, workers, progress)):
                if status == "ok":
                    report.entries.append(CacheEntry(key, str(path), clip))
                    report.decoded += 1
                    report.warnings.extend((clip.video_path, w) for w in result.get("warnings", []))
                else:
                    report.skipped.append((clip.video_path, result))
    for path, reason in report.skipped:
        logger.warning("skipped %s: %s", path, reason)
    logger.info("cache %s: %s", cache_dir, report.summary())
    return report


def _run_jobs(todo, pre: Preprocess, workers: int, progress: bool) -> list[tuple[str, str | dict]]:
    from .pool import map_isolated

    pre_json = pre.model_dump(mode="json")
    jobs = [(c.video_path, c.audio_path, pre_json, str(p), (c.start, c.end)) for c, _, p in todo]
    return map_isolated(_decode_job, jobs, workers, desc="decode clips", progress=progress, initializer=_worker_init,
                        crashed=lambda job: ("bad", "decode worker process crashed on this file"))


__all__ = ["CACHE_VERSION", "content_hash", "preprocess_hash", "clip_key", "default_cache_dir", "entry_path",
           "write_entry", "read_entry", "read_info", "CacheEntryError", "CacheEntry", "CacheReport", "build_cache"]
