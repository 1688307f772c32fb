"""Dataset folders -> labelled records, through a registry of formats.

Naming-scheme formats (RAVDESS, CREMA-D, here) parse one file name into a `ClipName` (label, actor,
modality, ...) or raise `NameParseError` with the reason; their `scan` walks a folder, parses every media
file and pairs the files of one clip (a video-only .mp4 with its audio-only .wav). The layouts of your own
data, `folder` (one sub-folder per class) and `manifest` (CSV / JSONL), live in `layouts.py`. Names that do
not parse are reported with their reason, never guessed. `labelled_clips` then maps labels onto the class
list (the recipe's `classes` / `label_map`, else the format's own list, else the labels found).

RAVDESS: `MM-VV-EE-II-SS-RR-AA.ext` under `Actor_AA/`
    MM modality 01 full-AV, 02 video-only, 03 audio-only; VV vocal channel 01 speech, 02 song;
    EE emotion 01..08 (RAVDESS_CLASSES order); II intensity 01 normal, 02 strong (neutral has no 02);
    SS statement 01/02; RR repetition 01/02; AA actor 01..24 (odd male, even female).
CREMA-D: `AAAA_SSS_EEE_LL.ext`, e.g. `1001_DFA_ANG_XX.flv`
    AAAA actor 1001..1091; SSS one of 12 sentences; EEE ANG DIS FEA HAP NEU SAD; LL LO MD HI XX.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..contract import CREMAD_CLASSES, RAVDESS_CLASSES
from ..registry import Registry

logger = logging.getLogger(__name__)

VIDEO_EXTS = (".mp4", ".flv", ".avi", ".mkv", ".mov", ".webm")
AUDIO_EXTS = (".wav", ".flac", ".mp3", ".m4a")


class NameParseError(ValueError):
    """A file name that does not follow its dataset's naming scheme (the message says why)."""


@dataclass(frozen=True)
class ClipName:
    """What a file name says about the file. `clip_id` is the same for the files of one clip
    (e.g. the video-only .mp4 and audio-only .wav of a RAVDESS recording)."""

    path: str
    format: str
    clip_id: str
    label: int                 # index into the format's class_names
    emotion: str
    actor: int
    modality: str              # "av" (video + audio track), "video" (video only), "audio" (audio only)
    vocal_channel: str = "speech"
    intensity: str = ""
    statement: str = ""
    repetition: str = ""


@dataclass
class Clip:
    """One sample: a video source plus an audio source (None = use the video's own audio track)."""

    video_path: str
    audio_path: str | None
    label: int
    emotion: str
    actor: int
    clip_id: str
    vocal_channel: str = "speech"
    intensity: str = ""
    meta: dict = field(default_factory=dict)
    start: float | None = None     # segment of a longer video, seconds (None: the whole file)
    end: float | None = None
    split: str | None = None       # a split given by the data (manifest column, train/ val/ test/ folders)
    speaker: str = ""              # the speaker's name where the data gives one (actor is its number)


@dataclass
class ScanResult:
    clips: list[Clip]
    bad: list[tuple[str, str]]          # (path, reason) of files that are not usable clips
    unused: list[tuple[str, str]]       # (path, why not used) of valid files another file supersedes
    class_names: list[str] = field(default_factory=list)   # set by `labelled_clips`


class DataFormat:
    """A dataset layout. Naming schemes set `name`, `class_names`, `example` and implement `parse`;
    layouts that are not one name per file (folder, manifest) override `scan` instead.
    `class_names` empty: the classes come from the data (or the recipe)."""

    name: str = ""
    class_names: list[str] = []
    example: str = ""               # one line shown when no format parses a folder

    def parse(self, path: str | os.PathLike) -> ClipName:
        raise NotImplementedError

    def scan(self, root: Path) -> ScanResult:
        """Parse every media file under `root` and pair the files of each clip.

        Per clip the video comes from the full-AV file if present, else the video-only file; the audio
        from an audio-only file when one exists (RAVDESS .wav is lossless), else the video's own track.
        Audio-only files without any video are listed as bad (a clip needs frames).
        """
        bad: list[tuple[str, str]] = []
        unused: list[tuple[str, str]] = []
        groups: dict[str, dict[str, list[ClipName]]] = {}
        for path in list_media(root):
            try:
                name = self.parse(path)
            except NameParseError as e:
                bad.append((str(path), f"unparseable {self.name} name: {e}"))
                continue
            groups.setdefault(name.clip_id, {}).setdefault(name.modality, []).append(name)
        clips = []
        for clip_id in sorted(groups):
            g = groups[clip_id]
            for mod, names in g.items():
                for dup in names[1:]:
                    unused.append((dup.path, f"duplicate {mod} file of clip {clip_id}; using {names[0].path}"))
            video = (g.get("av") or g.get("video") or [None])[0]
            audio = (g.get("audio") or [None])[0]
            if video is None:
                bad.append((audio.path, "audio-only file without a matching video file"))
                continue
            if g.get("av") and g.get("video"):
                unused.append((g["video"][0].path, f"video-only duplicate of full-AV {video.path}"))
            # a video-only file without its .wav keeps audio_path None: decoded with zero audio and a warning
            clips.append(Clip(video_path=video.path, audio_path=audio.path if audio else None, label=video.label,
                              emotion=video.emotion, actor=video.actor, clip_id=clip_id,
                              vocal_channel=video.vocal_channel, intensity=video.intensity,
                              meta={"modality": video.modality, "statement": video.statement,
                                    "repetition": video.repetition}))
        return ScanResult(clips=clips, bad=bad, unused=unused)

    def modality_of_ext(self, ext: str) -> str:
        if ext in VIDEO_EXTS:
            return "av"
        if ext in AUDIO_EXTS:
            return "audio"
        raise NameParseError(f"extension {ext!r} is neither video {VIDEO_EXTS} nor audio {AUDIO_EXTS}")


FORMATS = Registry("data format", plugins=("emodistill.core.data.layouts",))  # folder / manifest build on this module
register_format = FORMATS.register


def _digits(s: str) -> bool:
    """ASCII 0-9 only: str.isdigit() also accepts '²' or '١', which int() then refuses or reads differently."""
    return s.isascii() and s.isdigit()


def _code(value: str, what: str, allowed: dict[str, str] | range) -> str:
    ok = (value in allowed) if isinstance(allowed, dict) else (_digits(value) and len(value) == 2
                                                                 and int(value) in allowed)
    if not ok:
        shown = ", ".join(f"{k}={v}" for k, v in allowed.items()) if isinstance(allowed, dict) else \
            f"{allowed.start:02d}..{allowed.stop - 1:02d}"
        raise NameParseError(f"{what} code {value!r} is not one of {shown}")
    return value


class RavdessFormat(DataFormat):
    name = "ravdess"
    class_names = RAVDESS_CLASSES
    example = "Actor_01/01-01-03-01-01-01-01.mp4   (RAVDESS codes: modality-channel-emotion-...-actor)"
    MODALITY = {"01": "av", "02": "video", "03": "audio"}
    CHANNEL = {"01": "speech", "02": "song"}
    EMOTION = {f"{i + 1:02d}": c for i, c in enumerate(RAVDESS_CLASSES)}
    INTENSITY = {"01": "normal", "02": "strong"}
    TWO = {"01": "1st", "02": "2nd"}
    # RAVDESS song has no disgust or surprised recordings (emotion 07, 08)
    SONG_EMOTIONS = {"01", "02", "03", "04", "05", "06"}

    def parse(self, path: str | os.PathLike) -> ClipName:
        p = Path(path)
        ext = p.suffix.lower()
        parts = p.stem.split("-")
        if len(parts) != 7:
            raise NameParseError(f"expected 7 dash-separated codes MM-VV-EE-II-SS-RR-AA, got {len(parts)} in {p.stem!r}")
        mm, vv, ee, ii, ss, rr, aa = parts
        modality = self.MODALITY[_code(mm, "modality", self.MODALITY)]
        channel = self.CHANNEL[_code(vv, "vocal channel", self.CHANNEL)]
        emotion = self.EMOTION[_code(ee, "emotion", self.EMOTION)]
        _code(ii, "intensity", self.INTENSITY)
        _code(ss, "statement", self.TWO)
        _code(rr, "repetition", self.TWO)
        actor = int(_code(aa, "actor", range(1, 25)))
        if ee == "01" and ii == "02":
            raise NameParseError("intensity 02 (strong) does not exist for emotion 01 (neutral)")
        if channel == "song" and ee not in self.SONG_EMOTIONS:
            raise NameParseError(f"emotion {ee} ({emotion}) does not exist for vocal channel 02 (song)")
        if modality == "audio" and ext not in AUDIO_EXTS:
            raise NameParseError(f"modality 03 (audio-only) needs an audio file {AUDIO_EXTS}, got {ext!r}")
        if modality != "audio" and ext not in VIDEO_EXTS:
            raise NameParseError(f"modality {mm} ({modality}) needs a video file {VIDEO_EXTS}, got {ext!r}")
        folder = p.parent.name
        if folder.lower().startswith("actor_") and _digits(folder[6:]) and int(folder[6:]) != actor:
            raise NameParseError(f"actor code {aa} does not match its folder {folder!r}")
        return ClipName(path=str(p), format=self.name, clip_id=f"{vv}-{ee}-{ii}-{ss}-{rr}-{aa}",
                        label=int(ee) - 1, emotion=emotion, actor=actor, modality=modality,
                        vocal_channel=channel, intensity=self.INTENSITY[ii], statement=ss, repetition=rr)


class CremadFormat(DataFormat):
    name = "cremad"
    class_names = CREMAD_CLASSES
    example = "1001_DFA_ANG_XX.flv   (CREMA-D: actor_sentence_emotion_level)"
    EMOTION = {"NEU": "neutral", "HAP": "happy", "SAD": "sad", "ANG": "angry", "FEA": "fearful", "DIS": "disgust"}
    SENTENCES = {"IEO": "It's eleven o'clock", "TIE": "That is exactly what happened",
                 "IOM": "I'm on my way to the meeting", "IWW": "I wonder what this is about",
                 "TAI": "The airplane is almost full", "MTI": "Maybe tomorrow it will be cold",
                 "IWL": "I would like a new alarm clock", "ITH": "I think I have a doctor's appointment",
                 "DFA": "Don't forget a jacket", "ITS": "I think I've seen this before",
                 "TSI": "The surface is slick", "WSI": "We'll stop in a couple of minutes"}
    LEVEL = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}

    def parse(self, path: str | os.PathLike) -> ClipName:
        p = Path(path)
        parts = p.stem.split("_")
        if len(parts) != 4:
            raise NameParseError(f"expected 4 underscore-separated fields AAAA_SSS_EEE_LL, got {len(parts)} in {p.stem!r}")
        aa, ss, ee, ll = parts
        if not (_digits(aa) and len(aa) == 4 and 1001 <= int(aa) <= 1091):
            raise NameParseError(f"actor {aa!r} is not 1001..1091")
        _code(ss, "sentence", self.SENTENCES)
        emotion = self.EMOTION[_code(ee, "emotion", self.EMOTION)]
        _code(ll, "level", self.LEVEL)
        modality = self.modality_of_ext(p.suffix.lower())
        return ClipName(path=str(p), format=self.name, clip_id=p.stem, label=self.class_names.index(emotion),
                        emotion=emotion, actor=int(aa), modality=modality, vocal_channel="speech",
                        intensity=self.LEVEL[ll], statement=ss, repetition="")


@register_format(name="ravdess")
def _ravdess() -> DataFormat:
    return RavdessFormat()


@register_format(name="cremad")
def _cremad() -> DataFormat:
    return CremadFormat()


def get_format(name: str) -> DataFormat:
    return FORMATS.create(name)


def parse_name(path: str | os.PathLike, format: str = "ravdess") -> ClipName:
    """Parse one file name; raises `NameParseError` saying which code is wrong."""
    return get_format(format).parse(path)


def list_media(root: str | os.PathLike) -> list[Path]:
    """Media files under `root` (recursive, sorted, hidden folders such as the cache skipped)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in sorted(filenames):
            if not f.startswith(".") and Path(f).suffix.lower() in VIDEO_EXTS + AUDIO_EXTS:
                out.append(Path(dirpath) / f)
    return out


def supported_layouts() -> str:
    """One line per registered format with an example, for messages about data no format parses."""
    return "\n".join(f"  format: {n:<9} {FORMATS.create(n).example}" for n in FORMATS.names())


def scan_dataset(root: str | os.PathLike, format: str = "ravdess") -> ScanResult:
    """The clips under `root` (a folder; a manifest file for `format: manifest`) with their raw labels."""
    root = Path(root)
    fmt = get_format(format)
    if format == "manifest":
        if not root.is_file():
            raise FileNotFoundError(f"manifest not found: {root} (format: manifest takes a .csv or .jsonl file)")
    elif not root.is_dir():
        raise FileNotFoundError(f"dataset folder not found: {root}")
    scan = fmt.scan(root)
    logger.info("scanned %s: %d clips, %d bad files, %d unused", root, len(scan.clips), len(scan.bad), len(scan.unused))
    return scan


def labelled_clips(root: str | os.PathLike, format: str = "ravdess", classes: list[str] | None = None,
                   label_map: dict[str, str] | None = None) -> ScanResult:
    """`scan_dataset`, then every clip's label mapped (`label_map`: raw label -> class name) onto the class
    list: `classes` when given, else the format's own list, else the sorted labels found. A clip whose label
    is not in that list is moved to `bad`, named with its label; nothing is dropped silently."""
    scan = scan_dataset(root, format)
    label_map = dict(label_map or {})
    fixed = get_format(format).class_names
    mapped = [label_map.get(c.emotion, c.emotion) for c in scan.clips]
    found = set(mapped)
    if classes:
        names = list(classes)
    elif fixed and not label_map:
        names = list(fixed)
    elif fixed:  # a label map onto a fixed list keeps its order; names new to it follow, sorted
        names = [n for n in fixed if n in found] + sorted(found - set(fixed))
    else:
        names = sorted(found)
    index = {n: i for i, n in enumerate(names)}
    clips = []
    for clip, name in zip(scan.clips, mapped):
        if name not in index:
            shown = f"{clip.emotion!r}" + (f" (mapped to {name!r})" if name != clip.emotion else "")
            scan.bad.append((clip.video_path, f"label {shown} is not one of the classes {names}"))
            continue
        clip.label, clip.emotion = index[name], name
        clips.append(clip)
    return ScanResult(clips=clips, bad=scan.bad, unused=scan.unused, class_names=names)


__all__ = ["NameParseError", "ClipName", "Clip", "ScanResult", "DataFormat", "RavdessFormat", "CremadFormat",
           "FORMATS", "register_format", "get_format", "parse_name", "list_media", "scan_dataset", "labelled_clips",
           "supported_layouts", "VIDEO_EXTS", "AUDIO_EXTS"]
