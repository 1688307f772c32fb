"""`emodistill data check --data DIR`: what is in a dataset folder and which files cannot be used.

Every clip is decoded once (all video frames, no RGB conversion beyond the T sampled ones; the whole
audio track) in a process pool, so corrupt or truncated files show up here rather than mid-training.
How each problem is treated (the same way the cache build treats it):
    unparseable name, audio-only file without its video   -> skipped, listed with the reason
    corrupt / truncated / empty file, empty .wav          -> skipped, listed with the reason
    .mp4 without an audio track (or video-only w/o .wav)  -> used with zero audio, listed as a warning
    fewer frames than T                                   -> used with repeated frames, listed as a warning

The counts of the report (its first line and the JSON), each defined once:
    clips found  (clips_found)  clips named by the layout (file name, folder or manifest row) with a class, of the
                                --vocal-channel checked: what is decoded
    usable       (clips_ok)     found clips that decode; usable = found - bad_decode
    bad files    (files_bad)    bad_parse + bad_decode, every one listed under "bad files (skipped)" with its reason:
      bad_parse                 media files / manifest rows that name no clip (or a class outside the class list)
      bad_decode                found clips that do not decode (corrupt, truncated, empty)
The scanner's own "scanned DIR: N clips, M bad files" log line counts before decoding; data check leaves it out
so that one set of numbers is printed.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter

import numpy as np

from .names import Clip, labelled_clips, supported_layouts
from .splits import SPLITS, clip_splits

logger = logging.getLogger(__name__)


def inspect_clip(video_path: str, audio_path: str | None, num_frames: int, sample_rate: int = 16000,
                 segment: tuple[float | None, float | None] = (None, None)) -> dict:
    """Decode a clip (or its segment) fully and return its metadata; {"error": reason} when it cannot be used."""
    from .decode import DecodeError, decode_sources

    try:
        _, audio, info = decode_sources(video_path, audio_path, num_frames, sample_rate, start=segment[0],
                                        end=segment[1])
    except DecodeError as e:
        return {"error": str(e)}
    except Exception as e:  # noqa: BLE001 - one odd file must not end a check of thousands
        return {"error": f"unexpected {type(e).__name__}: {e}"}
    return info


def _inspect_all(clips: list[Clip], num_frames: int, workers: int, progress: bool) -> list[dict]:
    from .pool import map_isolated

    jobs = [(c.video_path, c.audio_path, num_frames, 16000, (c.start, c.end)) for c in clips]
    return map_isolated(inspect_clip, jobs, workers, desc="check clips", progress=progress,
                        crashed=lambda job: {"error": "decode worker process crashed on this file"})


@contextlib.contextmanager
def _without_scan_log():
    """The scanner's INFO line left out (the report's first line gives the counts, bad files including undecodable
    clips); its warnings still show."""
    log = logging.getLogger(labelled_clips.__module__)
    quiet = lambda record: record.levelno > logging.INFO  # noqa: E731
    log.addFilter(quiet)
    try:
        yield
    finally:
        log.removeFilter(quiet)


def check_dataset(root: str, format: str = "ravdess", num_frames: int = 16, split: str = "fixed", fold: int = 0,
                  vocal_channel: str = "all", workers: int = 2, progress: bool = True,
                  classes: list[str] | None = None, label_map: dict[str, str] | None = None) -> dict:
    """Scan + decode everything under `root` (the manifest file for format manifest); a JSON-able report."""
    with _without_scan_log():
        scan = labelled_clips(root, format, classes, label_map)
    clips = scan.clips if vocal_channel == "all" else [c for c in scan.clips if c.vocal_channel == vocal_channel]
    infos = _inspect_all(clips, num_frames, workers, progress)
    bad = [{"path": p, "reason": r} for p, r in scan.bad]
    warnings, ok = [], []
    for clip, info in zip(clips, infos):
        if "error" in info:
            bad.append({"path": clip.video_path, "reason": info["error"]})
            continue
        ok.append((clip, info))
        warnings.extend({"path": clip.video_path, "warning": w} for w in info.get("warnings", []))
    report = {"root": str(root), "format": format, "num_frames": num_frames, "files_bad": len(bad),
              "bad_parse": len(scan.bad), "bad_decode": len(clips) - len(ok), "clips_ok": len(ok),
              "clips_found": len(clips), "clips_other_channel": len(scan.clips) - len(clips), "bad": bad,
              "warnings": warnings,
              "unused": [{"path": p, "reason": r} for p, r in scan.unused], "class_names": scan.class_names}
    if not ok:
        if not scan.clips:  # nothing parsed (rather than all failing to decode, or another channel): say what would
            report["layouts"] = supported_layouts()
        return report
    try:
        names, actors = clip_splits([c for c, _ in ok], split, fold, format)
        given = bool(ok[0][0].split)
        report["split"] = {"kind": "given by the data" if given else split, "fold": fold, "actors": actors}
        if format in ("folder", "manifest") and not any(c.speaker for c, _ in ok):
            report["split"]["unit"] = "clip"  # no speakers: the numbered "actors" are single clips
    except ValueError as e:
        names = [None] * len(ok)
        report["split"] = {"kind": split, "fold": fold, "error": str(e)}
    table = {c: {s: 0 for s in ("total", *SPLITS)} for c in scan.class_names}
    for (clip, _), name in zip(ok, names):
        row = table[scan.class_names[clip.label]]
        row["total"] += 1
        if name:
            row[name] += 1
    report["per_class"] = table
    report["per_actor"] = {str(a): n for a, n in sorted(Counter(c.actor for c, _ in ok).items())}
    report["per_channel"] = dict(Counter(c.vocal_channel for c, _ in ok))
    durations = np.array([i["duration"] or 0.0 for _, i in ok])
    audio_sec = np.array([i.get("audio_seconds", 0.0) for _, i in ok])
    report["duration_s"] = {"min": float(durations.min()), "mean": float(durations.mean()),
                            "max": float(durations.max())}
    report["audio_s"] = {"min": float(audio_sec.min()), "mean": float(audio_sec.mean()), "max": float(audio_sec.max())}
    report["frames"] = {"min": int(min(i["frames"] for _, i in ok)), "max": int(max(i["frames"] for _, i in ok)),
                        "shorter_than_T": sum(i["frames"] < num_frames for _, i in ok)}
    report["resolutions"] = dict(Counter(f"{i['width']}x{i['height']}" for _, i in ok))
    report["fps"] = dict(Counter(f"{i['fps']:.2f}" for _, i in ok))
    report["sample_rates"] = dict(Counter(f"{i['audio_rate']} Hz x{i['audio_channels']}" if "audio_rate" in i
                                          else "no audio" for _, i in ok))
    report["codecs"] = dict(Counter(f"{i.get('codec')}/{i.get('audio_codec', '-')}" for _, i in ok))
    return report


def format_report(r: dict, max_list: int = 50) -> str:
    """The report as a plain-text table."""
    why = (f" ({r['bad_parse']} not parsed, {r['bad_decode']} not decodable)"
           if r["files_bad"] and "bad_parse" in r else "")
    other = (f" (and {r['clips_other_channel']} clips of another vocal channel, not checked)"
             if r.get("clips_other_channel") else "")
    lines = [f"dataset {r['root']} ({r['format']}): {r['clips_ok']} usable clips of {r['clips_found']} found{other}, "
             f"{r['files_bad']} bad files{why}, {len(r['warnings'])} warnings"]
    if r.get("per_class"):
        split = r.get("split", {})
        title = f"split {split.get('kind')}" + (f" fold {split.get('fold')}" if split.get("kind") == "fold" else "")
        lines += ["", f"{'class':<12}{'total':>7}{'train':>7}{'val':>7}{'test':>7}   ({title})"]
        tot = Counter()
        for name, row in r["per_class"].items():
            lines.append(f"{name:<12}" + "".join(f"{row[k]:>7}" for k in ("total", *SPLITS)))
            tot.update(row)
        lines.append(f"{'all':<12}" + "".join(f"{tot[k]:>7}" for k in ("total", *SPLITS)))
        if split.get("unit") == "clip":
            lines.append("split by clip, stratified by class: no speakers given (a manifest's speaker column "
                         "makes it speaker-independent)")
        elif "actors" in split:
            lines.append("actors: " + "; ".join(f"{s} {','.join(map(str, a))}" for s, a in split["actors"].items()))
            lines.append("clips per actor: " + " ".join(f"{a}:{n}" for a, n in r["per_actor"].items()))
        elif "error" in split:
            lines.append(f"split: {split['error']}")
        lines += [f"vocal channel: {r['per_channel']}", "",
                  f"video duration s: min {r['duration_s']['min']:.2f} mean {r['duration_s']['mean']:.2f} "
                  f"max {r['duration_s']['max']:.2f};  audio s: min {r['audio_s']['min']:.2f} "
                  f"mean {r['audio_s']['mean']:.2f} max {r['audio_s']['max']:.2f}",
                  f"frames: min {r['frames']['min']} max {r['frames']['max']}; "
                  f"{r['frames']['shorter_than_T']} clips shorter than T={r['num_frames']}",
                  f"resolutions: {r['resolutions']}", f"fps: {r['fps']}", f"audio: {r['sample_rates']}",
                  f"codecs (video/audio): {r['codecs']}"]
    if r.get("layouts"):
        lines += ["", f"no clip here is usable as format {r['format']}; the layouts emodistill reads "
                      "(--data-format NAME, or data.format in a recipe):", r["layouts"], "see docs/data.md"]
    for title, items, key in (("bad files (skipped)", r["bad"], "reason"),
                              ("warnings (used)", r["warnings"], "warning"),
                              ("unused duplicates", r["unused"], "reason")):
        if items:
            lines += ["", f"{title}: {len(items)}"]
            lines += [f"  {i['path']}: {i[key]}" for i in items[:max_list]]
            if len(items) > max_list:
                lines.append(f"  ... {len(items) - max_list} more (see --json)")
    return "\n".join(lines)


__all__ = ["inspect_clip", "check_dataset", "format_report"]
