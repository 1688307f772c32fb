"""Decode one clip with PyAV: T uniformly spaced RGB frames, face crop, resize; 16 kHz mono audio.

Efficiency on real RAVDESS (1280x720 H.264 ~30 fps, AAC 48 kHz): H.264 has to be decoded frame by
frame anyway, but only the T frames that are kept are converted to RGB (the conversion of a 720p frame
costs about as much as decoding it); the face detector runs on a few downscaled grey frames; audio is
resampled and down-mixed by libswresample while decoding.

Outcomes: a clip that cannot be used raises `DecodeError` with the reason (the cache build and
`data check` skip + list it). Recoverable problems are returned as `info["warnings"]`:
  - no audio track in a full-AV file, or a video-only file without its .wav -> audio is zeros;
  - fewer decoded frames than T -> frames repeated (nearest-frame sampling);
  - fewer frames decoded than the container declares (a truncated file with >= half its frames;
    less than half is an error).
A segment (`start`/`end` seconds, from a manifest) decodes only the frames and audio inside it: the
demuxer seeks to the key frame before `start`, frames before it are dropped, decoding stops at `end`.
An empty audio file (0 samples) is an error, not zeros: a present-but-empty file is a broken file; so is audio
shorter than MIN_AUDIO_SECONDS (it would be zero-padded into a silent clip and flip predictions unnoticed), and
audio covering less than half of the video is used with a warning. Frames larger than MAX_SIDE are refused.
"""

from __future__ import annotations

import functools
import logging
import os

import av
import cv2
import numpy as np

from ..contract import Preprocess
from ..errors import InputError

logger = logging.getLogger(__name__)

DETECT_FRAMES = 3        # frames the face detector looks at (boxes are combined by median)
DETECT_WIDTH = 320       # frames are downscaled to this width for detection
MIN_DECODED = 0.5        # a truncated file that still decodes is used if at least this share of frames is there
MAX_SIDE = 8192          # larger frames are refused before decoding (one RGB frame of 8192^2 is 200 MB)
MIN_AUDIO_SECONDS = 0.1  # less audio than this is no speech: an error, not a silently zero-padded clip
SHORT_AUDIO_SHARE = 0.5  # audio covering less than this share of the video is used with a warning


class DecodeError(InputError, RuntimeError):
    """A file that cannot be decoded into a clip (message says why)."""


def _open(path: str | os.PathLike):
    if not os.path.exists(path):
        raise DecodeError(f"file not found: {path}")
    if os.path.getsize(path) == 0:
        raise DecodeError("empty file (0 bytes)")
    try:
        return av.open(str(path))
    except (av.FFmpegError, OSError, ValueError) as e:
        size = _y4m_size(path)  # FFmpeg refuses giant raw frames with a misleading errno (EBUSY)
        if size and max(size) > MAX_SIDE:
            raise DecodeError(f"frame size {size[0]}x{size[1]} exceeds the {MAX_SIDE}x{MAX_SIDE} this loader "
                              "decodes; downscale the video first") from None
        raise DecodeError(f"cannot open ({type(e).__name__}: {e})") from None


def _y4m_size(path) -> tuple[int, int] | None:
    """(width, height) from a YUV4MPEG2 header, else None."""
    with open(path, "rb") as f:
        head = f.read(256).split(b"\n", 1)[0].split()
    if not head or head[0] != b"YUV4MPEG2":
        return None
    dims = {t[:1]: t[1:] for t in head[1:] if t[:1] in (b"W", b"H")}
    try:
        return int(dims[b"W"]), int(dims[b"H"])
    except (KeyError, ValueError):
        return None


def _estimated_count(container, stream) -> int:
    """Frames implied by the container's duration (mkv/webm declare no frame count), 0 when unknown."""
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if container.duration and rate:
        return max(1, int(round(container.duration / av.time_base * rate)))
    return 0


def _frame_count(stream) -> int:
    if stream.frames:
        return int(stream.frames)
    rate = float(stream.average_rate or stream.guessed_rate or 0)
    if stream.duration and stream.time_base and rate:
        return max(1, int(round(float(stream.duration * stream.time_base) * rate)))
    return 0


def _seek(container, stream, start: float | None) -> None:
    if start:
        container.seek(int(start / stream.time_base), stream=stream, backward=True, any_frame=False)


def _window(frames, start: float | None, end: float | None):
    """The decoded frames whose time lies in [start, end) (all of them without a segment)."""
    for frame in frames:
        t = frame.time
        if t is not None and start is not None and t < start - 1e-6:
            continue
        if t is not None and end is not None and t >= end - 1e-6:
            return
        yield frame


def _targets(n: int, t: int) -> np.ndarray:
    """Indices of t frames uniformly spread over n frames (centres of t equal bins)."""
    return np.minimum(((np.arange(t) + 0.5) * n / t).astype(np.int64), n - 1)


def read_video(path: str | os.PathLike, num_frames: int, threads: int = 1, start: float | None = None,
               end: float | None = None) -> tuple[np.ndarray, dict]:
    """-> frames uint8 [T, H, W, 3] RGB at source resolution (of the segment [start, end) s when given),
    info (fps, width, height, frames, ...)."""
    warnings: list[str] = []
    with _open(path) as container:
        if not container.streams.video:
            raise DecodeError("no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        declared = _frame_count(stream)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        info = {"width": stream.codec_context.width, "height": stream.codec_context.height, "fps": fps,
                "declared_frames": declared, "codec": stream.codec_context.name}
        if max(info["width"], info["height"]) > MAX_SIDE:
            raise DecodeError(f"frame size {info['width']}x{info['height']} exceeds the {MAX_SIDE}x{MAX_SIDE} "
                              "this loader decodes; downscale the video first")
        # only the T wanted frames are kept (memory does not grow with the clip): without a declared count
        # (mkv, webm) they are guessed from the duration; frames the guess missed are read in a second pass
        estimate = declared or _estimated_count(container, stream)
        segment = start is not None or end is not None
        if segment:  # the segment's own frames; the container's count is not the segment's
            declared = 0
            stop = end if end is not None else (estimate / fps if fps else None)
            estimate = int(round((stop - (start or 0.0)) * fps)) if stop is not None and fps else 0
        wanted = set(_targets(estimate, num_frames).tolist()) if estimate > 0 else set()
        kept: dict[int, np.ndarray] = {}
        count = 0
        _seek(container, stream, start)
        try:
            for frame in _window(container.decode(stream), start, end):
                if count in wanted:
                    kept[count] = frame.to_ndarray(format="rgb24")
                count += 1
        except av.FFmpegError as e:
            if count == 0:
                raise DecodeError(f"video decode failed ({type(e).__name__}: {e})") from e
            warnings.append(f"video decode stopped after {count} frames ({type(e).__name__}: {e})")
    if count == 0:
        raise DecodeError(f"no video frames in the segment {start}-{end} s" if segment else "no video frames decoded")
    if declared and count < MIN_DECODED * declared:
        raise DecodeError(f"truncated: only {count} of the {declared} frames the container declares decode")
    if declared and count < declared:
        warnings.append(f"container declares {declared} frames but only {count} decoded (truncated?)")
    idx = _targets(count, num_frames)
    missing = {int(i) for i in idx.tolist()} - set(kept)
    if missing:  # fewer frames than declared: decode again for the frames actually there
        kept.update(_read_indices(path, missing, threads, start, end))
        if missing - set(kept):
            raise DecodeError("video frames changed between two decodes of the same file")
    if count < num_frames:
        warnings.append(f"only {count} frames < T={num_frames}: frames repeated")
    info.update(frames=count, warnings=warnings)
    return np.stack([kept[int(i)] for i in idx]), info


def _read_indices(path, indices: set[int], threads: int, start: float | None = None,
                  end: float | None = None) -> dict[int, np.ndarray]:
    out, count = {}, 0
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        _seek(container, stream, start)
        try:
            for frame in _window(container.decode(stream), start, end):
                if count in indices:
                    out[count] = frame.to_ndarray(format="rgb24")
                count += 1
        except av.FFmpegError:
            pass
    return out


def read_audio(path: str | os.PathLike, sample_rate: int = 16000, start: float | None = None,
               end: float | None = None) -> tuple[np.ndarray | None, dict]:
    """-> float32 [n] mono at `sample_rate` in [-1, 1] (None when the file has no audio stream), info.
    With `start`/`end` (seconds) only that segment's samples."""
    with _open(path) as container:
        if not container.streams.audio:
            return None, {}
        stream = container.streams.audio[0]
        info = {"audio_rate": stream.codec_context.sample_rate, "audio_channels": stream.codec_context.channels,
                "audio_codec": stream.codec_context.name}
        declared = (int(round(float(stream.duration * stream.time_base) * sample_rate))
                    if stream.duration and stream.time_base else 0)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = []
        first = None  # time of the first kept frame: the segment is cut from there
        if start is not None or end is not None:
            declared = 0
        _seek(container, stream, start)
        try:
            for frame in container.decode(stream):
                if frame.time is not None:
                    if end is not None and frame.time >= end:
                        break
                    if start is not None and frame.time + frame.samples / frame.sample_rate <= start:
                        continue
                    first = frame.time if first is None else first
                frame.pts = None  # resampler only needs samples; odd pts in broken files must not stop it
                chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))
        except av.FFmpegError as e:
            if not chunks:
                raise DecodeError(f"audio decode failed ({type(e).__name__}: {e})") from e
            info["warnings"] = [f"audio decode stopped early ({type(e).__name__}: {e})"]
    audio = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise DecodeError("empty audio (0 samples)")
    if 0 < declared < audio.size:  # the codec's last frame is padded past the stream's end
        audio = audio[:declared]
    if start is not None or end is not None:
        origin = first if first is not None else (start or 0.0)
        lo = max(0, int(round(((start or 0.0) - origin) * sample_rate)))
        hi = audio.size if end is None else max(lo, int(round((end - origin) * sample_rate)))
        audio = audio[lo:hi]
    info["audio_seconds"] = audio.size / sample_rate
    return np.clip(audio, -1.0, 1.0), info


def fit_audio(audio: np.ndarray, num_samples: int) -> np.ndarray:
    """Centre crop when longer (speech sits mid-clip in RAVDESS), zero-pad at the end when shorter."""
    n = audio.shape[0]
    if n >= num_samples:
        start = (n - num_samples) // 2
        return audio[start:start + num_samples]
    return np.pad(audio, (0, num_samples - n))


@functools.lru_cache(maxsize=1)
def _cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"cannot load OpenCV's Haar cascade {path} (opencv-python-headless < 5 bundles it)")
    return cascade


def haar_detect(frame_rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """OpenCV's frontal-face cascade on one [H, W, 3] RGB frame, downscaled to DETECT_WIDTH -> (boxes [N, 4] x, y,
    w, h in the downscaled frame's pixels, scale); divide by the scale for source pixels. The one Haar detector of
    the project: `detect_face` (training crops) and `faces.HaarDetector` (the stream) both call it."""
    h, w = frame_rgb.shape[:2]
    scale = min(1.0, DETECT_WIDTH / w)
    grey = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (int(round(w * scale)), int(round(h * scale))), interpolation=cv2.INTER_AREA)
    min_side = max(16, int(min(grey.shape) / 8))
    found = _cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return found, scale


def detect_face(frames: np.ndarray) -> tuple[int, int, int, int] | None:
    """Median (x, y, w, h) of the largest face in a few frames of [T, H, W, 3] RGB, or None."""
    t = frames.shape[0]
    boxes = []
    for i in np.unique(np.linspace(0, t - 1, min(DETECT_FRAMES, t)).round().astype(int)):
        found, scale = haar_detect(frames[i])
        if len(found):
            x, y, bw, bh = max(found, key=lambda b: b[2] * b[3])
            boxes.append(np.array([x, y, bw, bh], dtype=np.float64) / scale)
    if not boxes:
        return None
    x, y, bw, bh = np.median(np.stack(boxes), axis=0)
    return int(x), int(y), int(bw), int(bh)


def _square(cx: float, cy: float, side: float, w: int, h: int) -> tuple[int, int, int, int]:
    """A square of `side` centred at (cx, cy), shrunk/shifted to lie inside the frame -> x0, y0, x1, y1."""
    side = int(round(min(side, w, h)))
    x0 = int(round(min(max(cx - side / 2, 0), w - side)))
    y0 = int(round(min(max(cy - side / 2, 0), h - side)))
    return x0, y0, x0 + side, y0 + side


def crop_box(frames: np.ndarray, pre: Preprocess, source: str = "") -> tuple[tuple[int, int, int, int], bool | None]:
    """Crop box (x0, y0, x1, y1) in pixels for `pre.face_crop`, and whether a face was detected."""
    h, w = frames.shape[1:3]
    if pre.face_crop == "none":
        return (0, 0, w, h), None
    if pre.face_crop == "box":
        fx0, fy0, fx1, fy1 = pre.face_box
        return (int(fx0 * w), int(fy0 * h), max(int(fx0 * w) + 1, int(fx1 * w)),
                max(int(fy0 * h) + 1, int(fy1 * h))), None
    if pre.face_crop == "haar":
        face = detect_face(frames)
        if face is not None:
            return face_square(face, pre, w, h), True
        logger.debug("no face found in %s: centre crop", source or "clip")
    return _square(w / 2, h / 2, min(w, h), w, h), (False if pre.face_crop == "haar" else None)


def face_square(face: tuple[float, float, float, float], pre: Preprocess, w: int, h: int) -> tuple[int, int, int, int]:
    """The square crop (x0, y0, x1, y1) around a detected face (x, y, w, h), enlarged by `pre.crop_margin`."""
    x, y, bw, bh = face
    return _square(x + bw / 2, y + bh / 2, max(bw, bh) * pre.crop_margin, w, h)


def resize_crop(frames, box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """T frames [H, W, 3] uint8 (array or list) -> [T, size, size, 3] uint8, all cut at `box` (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    out = np.empty((len(frames), size, size, 3), np.uint8)
    for i, f in enumerate(frames):
        crop = f[y0:y1, x0:x1]
        interp = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_LINEAR
        out[i] = cv2.resize(crop, (size, size), interpolation=interp)
    return out


def crop_resize(frames: np.ndarray, pre: Preprocess, source: str = "") -> tuple[np.ndarray, dict]:
    """[T, H, W, 3] uint8 -> [T, S, S, 3] uint8 (S = pre.image_size), one box for all frames."""
    box, found = crop_box(frames, pre, source)
    return resize_crop(frames, box, pre.image_size), {"crop_box": list(box), "face_detected": found}


def decode_sources(video_path: str | os.PathLike, audio_path: str | os.PathLike | None, num_frames: int,
                   sample_rate: int, threads: int = 1, start: float | None = None,
                   end: float | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """-> frames uint8 [T, H, W, 3] at source size, audio float32 [n] (n = 0 when there is none), info
    with `warnings`. `start`/`end`: a segment in seconds (of the audio file too when it is separate).
    Raises DecodeError for a clip that cannot be used."""
    frames, info = read_video(video_path, num_frames, threads, start, end)
    warnings = list(info.pop("warnings"))
    src = audio_path if audio_path is not None else video_path
    try:
        audio, ainfo = read_audio(src, sample_rate, start, end)
    except DecodeError as e:
        raise DecodeError(f"{'audio file ' + str(audio_path) if audio_path else 'audio track'}: {e}") from e
    warnings.extend(ainfo.pop("warnings", []))
    info.update(ainfo)
    _check_audio_length(info, warnings, audio_path or "audio track")
    if audio is None:
        if audio_path is not None:
            raise DecodeError(f"audio file {audio_path} has no audio stream")
        warnings.append("video-only file without its audio file: audio is zeros"
                        if _is_video_only(video_path) else "no audio track: audio is zeros")
        audio = np.zeros(0, np.float32)
        info["audio_seconds"] = 0.0
    info["duration"] = info["frames"] / info["fps"] if info.get("fps") else None
    info["warnings"] = warnings
    return frames, audio, info


def _check_audio_length(info: dict, warnings: list[str], what) -> None:
    """Near-empty audio is an error; audio much shorter than the video a warning (it is zero-padded)."""
    seconds = info.get("audio_seconds")
    if seconds is None:
        return
    video_s = info["frames"] / info["fps"] if info.get("fps") else None
    if seconds < MIN_AUDIO_SECONDS:
        raise DecodeError(f"{what}: only {seconds:.4f} s of audio ({MIN_AUDIO_SECONDS} s at least)"
                          + (f" for a {video_s:.2f} s video" if video_s else "") + "; the audio is truncated or "
                          "belongs to another clip")
    if video_s and seconds < SHORT_AUDIO_SHARE * video_s:
        warnings.append(f"audio covers {seconds:.2f} s of the {video_s:.2f} s video: the rest is silence")


def load_clip(video_path: str | os.PathLike, audio_path: str | os.PathLike | None, pre: Preprocess,
              threads: int = 1, start: float | None = None, end: float | None = None
              ) -> tuple[np.ndarray, np.ndarray, dict]:
    """Decode a clip the way training sees it (before augmentation).

    Returns video uint8 [T, S, S, 3] RGB, audio float32 [N] mono at pre.sample_rate (N = pre.num_samples,
    centre-cropped or zero-padded), info (source metadata, crop box, `warnings`). Raises DecodeError.
    """
    frames, audio, info = decode_sources(video_path, audio_path, pre.num_frames, pre.sample_rate, threads,
                                         start, end)
    video, crop_info = crop_resize(frames, pre, str(video_path))
    info.update(crop_info)
    for w in info["warnings"]:
        logger.warning("%s: %s", video_path, w)
    return video, fit_audio(audio, pre.num_samples), info


def _is_video_only(path) -> bool:
    return os.path.basename(str(path)).startswith("02-")


__all__ = ["DecodeError", "read_video", "read_audio", "decode_sources", "fit_audio", "detect_face", "crop_box", "crop_resize",
           "face_square", "resize_crop",
           "load_clip"]
