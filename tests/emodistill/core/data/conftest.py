"""Fixtures for the data tests: a small synthetic set (generated once per session) and `media`, which writes
small media files with known content (good and deliberately bad)."""

from __future__ import annotations

import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from emodistill.core.contract import Preprocess


@pytest.fixture(scope="session")
def synth_small(tmp_path_factory) -> Path:
    """The `--size small` synthetic set (6 actors x 16 clips), read-only for tests: copy before changing it."""
    from emodistill.core.data.synth import generate

    out = tmp_path_factory.mktemp("synth_small")
    generate(out, size="small", seed=0, workers=2, progress=False)
    return out


@pytest.fixture
def synth_copy(synth_small, tmp_path) -> Path:
    """A private copy of the small set (tests may add, break or delete files in it)."""
    dst = tmp_path / "synth"
    shutil.copytree(synth_small, dst, ignore=shutil.ignore_patterns(".emodistill_cache"))
    return dst


class Media:
    """Writers of test media; `Media.DEMO` is the demo preprocessing."""

    DEMO = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0, face_crop="center")

    @staticmethod
    def write_clip(path: Path, frames: int = 20, size: int = 32, audio_seconds: float | None = 1.0, fps: int = 10,
                   seed: int = 0, faststart: bool = False) -> Path:
        """A small H.264 .mp4 with (or without: audio_seconds=None) an AAC track."""
        import av

        rng = np.random.default_rng(seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        opts = {"movflags": "+faststart"} if faststart else {}
        with av.open(str(path), "w", format="mp4", options=opts) as out:
            vs = out.add_stream("libx264", rate=fps, options={"preset": "ultrafast", "g": "4"})
            vs.width = vs.height = size
            vs.pix_fmt = "yuv420p"
            aus = out.add_stream("aac", rate=16000, layout="mono") if audio_seconds is not None else None
            for i in range(frames):
                img = np.full((size, size, 3), 40 * (i % 6), np.uint8)
                img[:, : size // 2] = rng.integers(0, 255, 3, dtype=np.uint8)
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts = i
                out.mux(vs.encode(f))
            out.mux(vs.encode(None))
            if aus is not None:
                pcm = (0.3 * np.sin(2 * np.pi * 220 * np.arange(int(16000 * audio_seconds)) / 16000)).astype(np.float32)
                for i in range(0, pcm.size, 1024):
                    a = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024].copy(), format="fltp", layout="mono")
                    a.sample_rate, a.pts = 16000, i
                    out.mux(aus.encode(a))
                out.mux(aus.encode(None))
        return path


    @staticmethod
    def write_wav(path: Path, seconds: float, rate: int = 48000, channels: int = 2, freq: float = 440.0) -> Path:
        """16-bit PCM wav (RAVDESS audio-only files are 16-bit 48 kHz); seconds=0 -> header only, no samples."""
        path.parent.mkdir(parents=True, exist_ok=True)
        n = int(seconds * rate)
        x = (0.5 * np.sin(2 * np.pi * freq * np.arange(n) / rate) * 32767).astype(np.int16)
        with wave.open(str(path), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(rate)
            w.writeframes(np.repeat(x[:, None], channels, 1).tobytes())
        return path


@pytest.fixture
def media() -> type[Media]:
    return Media
