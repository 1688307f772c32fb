"""The layouts of your own data: `folder` (one sub-folder per class) and `manifest` (CSV / JSONL).

folder, like torchvision's `ImageFolder` and Hugging Face's `videofolder`:
    my_videos/happy/clip1.mp4         the class is the first folder under the root
    my_videos/happy/clip1.wav         optional: an audio file of the same stem is the clip's audio
    my_videos/sad/clip2.mp4
    my_videos/train/happy/clip1.mp4   optional: train/ val/ test/ above the class folders fix the splits
No speaker is known, so every clip is its own split group; give a manifest with a `speaker` column for
speaker-independent splits.

manifest, a .csv with a header row or a .jsonl of objects, paths relative to the manifest's folder:
    path,label,audio_path,speaker,split,start,end
    videos/interview1.mp4,happy,,spk01,,12.0,15.5      a labelled segment of a long video
    videos/clip2.mp4,sad,audio/clip2.wav,spk02,,,
`path` and `label` are required; the rest optional. Rows that cannot be used (missing file, a start that
is not a number, end <= start, an unknown split, ...) are listed with their line number and counted, never
dropped silently. `split` is all-or-nothing: every row gives one, or none does.

Speakers (or, without them, clips) are numbered 1..n in an order that makes the contiguous groups
`splits.py` cuts mixed: speakers by a hash of their name, speaker-less clips stratified by class.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
from pathlib import Path

from .names import AUDIO_EXTS, VIDEO_EXTS, Clip, DataFormat, ScanResult, list_media, register_format

logger = logging.getLogger(__name__)

SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "valid": "val", "test": "test"}
MANIFEST_COLUMNS = ("path", "label", "audio_path", "speaker", "split", "start", "end")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def number_speakers(clips: list[Clip]) -> None:
    """Set `actor` = 1..n per speaker (per clip where no speaker is given).

    The split cuts the numbered actors into contiguous groups (`splits.py`), so the order decides the split:
    speakers sit at the fraction of their name's hash; a clip without a speaker at its rank among its class's
    clips (ordered by hash), so every contiguous group holds each class in proportion (a stratified split)."""
    position: dict[str, float] = {}
    by_label: dict[str, list[Clip]] = {}
    for c in clips:
        if c.speaker:
            position[f"speaker:{c.speaker}"] = _hash(c.speaker) / 2 ** 64
        else:
            by_label.setdefault(c.emotion, []).append(c)
    for group in by_label.values():
        group.sort(key=lambda c: (_hash(c.clip_id), c.clip_id))
        for i, c in enumerate(group):
            position[f"clip:{c.clip_id}"] = (i + 0.5) / len(group)
    order = sorted(position, key=lambda g: (position[g], _hash(g), g))
    number = {g: i + 1 for i, g in enumerate(order)}
    for c in clips:
        c.actor = number[f"speaker:{c.speaker}" if c.speaker else f"clip:{c.clip_id}"]


class FolderFormat(DataFormat):
    name = "folder"
    example = "happy/clip1.mp4, sad/clip2.mp4   (one folder per class; clip1.wav beside it is its audio)"

    def scan(self, root: Path) -> ScanResult:
        top = {d.name.lower() for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
        by_split = "train" in top and top <= set(SPLIT_NAMES)
        depth = 3 if by_split else 2
        layout = "SPLIT/CLASS/FILE" if by_split else "CLASS/FILE"
        bad: list[tuple[str, str]] = []
        unused: list[tuple[str, str]] = []
        groups: dict[tuple, dict[str, list[Path]]] = {}
        for path in list_media(root):
            parts = path.relative_to(root).parts
            if len(parts) < depth:
                bad.append((str(path), f"not inside a class folder (layout {layout} under {root})"))
                continue
            kind = "video" if path.suffix.lower() in VIDEO_EXTS else "audio"
            groups.setdefault((*parts[:depth - 1], str(path.with_suffix(""))), {}).setdefault(kind, []).append(path)
        clips = []
        for key in sorted(groups):
            g = groups[key]
            videos, audios = g.get("video", []), g.get("audio", [])
            for dup in videos[1:] + audios[1:]:
                unused.append((str(dup), f"another file of the same stem is used: {(videos or audios)[0]}"))
            if not videos:
                bad.append((str(audios[0]), "audio file without a video of the same stem"))
                continue
            split, label = (SPLIT_NAMES[key[0].lower()], key[1]) if by_split else (None, key[0])
            clips.append(Clip(video_path=str(videos[0]), audio_path=str(audios[0]) if audios else None, label=-1,
                              emotion=label, actor=0, clip_id=str(Path(videos[0]).relative_to(root).with_suffix("")),
                              split=split))
        number_speakers(clips)
        return ScanResult(clips=clips, bad=bad, unused=unused)


def _rows(path: Path) -> list[tuple[int, dict | str]]:
    """(line number, row dict) or (line number, why the line is not a row), in file order."""
    if path.suffix.lower() == ".jsonl":
        out = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except ValueError as e:
                    out.append((n, f"not JSON ({e})"))
                    continue
                out.append((n, row if isinstance(row, dict) else f"not a JSON object but {type(row).__name__}"))
        return out
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{path}: a manifest is a .csv (with a header row) or a .jsonl file")
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ("path", "label") if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{path}: the header row {reader.fieldnames} lacks the column(s) {missing}; "
                             f"columns: {', '.join(MANIFEST_COLUMNS)} (path and label required)")
        out = []
        for row in reader:
            if None in row:
                out.append((reader.line_num, f"{len(row[None])} more fields than the header's {len(reader.fieldnames)}"))
            elif any((v or "").strip() for v in row.values()):
                out.append((reader.line_num, row))
        return out


def _text(row: dict, key: str) -> str:
    v = row.get(key)
    return "" if v is None else str(v).strip()


def _seconds(row: dict, key: str) -> float | None:
    text = _text(row, key)
    if not text:
        return None
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{key} {text!r} is not a number of seconds") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{key} {text!r} is not a finite number of seconds >= 0")
    return v


def _file(base: Path, text: str, what: str, exts: tuple[str, ...]) -> Path:
    p = Path(text) if Path(text).is_absolute() else base / text
    if not p.is_file():
        raise ValueError(f"{what} {text!r}: no such file ({p})")
    if p.suffix.lower() not in exts:
        raise ValueError(f"{what} {text!r}: extension {p.suffix!r} is not one of {exts}")
    return p


def parse_row(row: dict, base: Path) -> Clip:
    """One manifest row -> Clip (label raw, actor numbered later); ValueError says what is wrong."""
    if not _text(row, "path"):
        raise ValueError("path is empty")
    if not _text(row, "label"):
        raise ValueError("label is empty")
    video = _file(base, _text(row, "path"), "path", VIDEO_EXTS)
    audio = _file(base, _text(row, "audio_path"), "audio_path", AUDIO_EXTS + VIDEO_EXTS) \
        if _text(row, "audio_path") else None
    split = _text(row, "split").lower() or None
    if split is not None and split not in SPLIT_NAMES:
        raise ValueError(f"split {_text(row, 'split')!r} is not one of train, val, test")
    start, end = _seconds(row, "start"), _seconds(row, "end")
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end {end} is not after start {start}")
    segment = "" if start is None and end is None else f"@{start or 0:g}-{'' if end is None else f'{end:g}'}"
    return Clip(video_path=str(video), audio_path=str(audio) if audio else None, label=-1,
                emotion=_text(row, "label"), actor=0, clip_id=_text(row, "path") + segment,
                start=start if start is not None or end is None else 0.0, end=end,
                split=SPLIT_NAMES[split] if split else None, speaker=_text(row, "speaker"))


class ManifestFormat(DataFormat):
    name = "manifest"
    example = "clips.csv: path,label[,audio_path,speaker,split,start,end], e.g. videos/a.mp4,happy,,spk1,,2.0,5.5"

    def scan(self, root: Path) -> ScanResult:
        bad: list[tuple[str, str]] = []
        unused: list[tuple[str, str]] = []
        clips: list[Clip] = []
        lines: list[int] = []
        extra: set[str] = set()
        seen: dict[str, int] = {}
        for n, row in _rows(root):
            where = f"{root}:{n}"
            if isinstance(row, str):
                bad.append((where, row))
                continue
            extra |= set(row) - set(MANIFEST_COLUMNS)
            try:
                clip = parse_row(row, root.parent)
            except ValueError as e:
                bad.append((where, str(e)))
                continue
            if clip.clip_id in seen:
                unused.append((where, f"the same clip as line {seen[clip.clip_id]}"))
                continue
            seen[clip.clip_id] = n
            clip.meta["line"] = n
            clips.append(clip)
            lines.append(n)
        if extra:
            logger.warning("%s: columns %s are not read (known: %s)", root, sorted(extra), ", ".join(MANIFEST_COLUMNS))
        given = [c.split is not None for c in clips]
        if any(given) and not all(given):
            keep = []
            for c, n in zip(clips, lines):
                if c.split is None:
                    bad.append((f"{root}:{n}", "no split, while other rows give one: give every row a split, or none"))
                else:
                    keep.append(c)
            clips = keep
        number_speakers(clips)
        return ScanResult(clips=clips, bad=bad, unused=unused)


def write_layout(clips: list[Clip], out: Path, to: str) -> Path:
    """Write `clips` (labels as `emotion`) as a folder tree (hard links, else copies, of video and audio) or
    as `out/manifest.csv` pointing at the files where they are (with speaker and segment) -> the new root."""
    import os
    import shutil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if to == "manifest":
        path = out / "manifest.csv"
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(MANIFEST_COLUMNS)
            for c in clips:
                rel = [os.path.relpath(p, out) if p else "" for p in (c.video_path, c.audio_path)]
                w.writerow([rel[0], c.emotion, rel[1], c.speaker or (f"actor{c.actor:02d}" if c.actor else ""),
                            c.split or "", "" if c.start is None else c.start, "" if c.end is None else c.end])
        return path
    if to != "folder":
        raise ValueError(f"layout {to!r} is not one of folder, manifest")
    for c in clips:
        stem = Path(c.video_path).stem
        for src in filter(None, (c.video_path, c.audio_path)):
            dst = out / c.emotion / (stem + Path(src).suffix)
            if dst.exists():
                raise FileExistsError(f"{dst} exists: write into an empty folder")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    return out


@register_format(name="folder")
def _folder() -> DataFormat:
    return FolderFormat()


@register_format(name="manifest")
def _manifest() -> DataFormat:
    return ManifestFormat()


__all__ = ["FolderFormat", "ManifestFormat", "MANIFEST_COLUMNS", "SPLIT_NAMES", "number_speakers", "parse_row",
           "write_layout"]
