"""PyAV decoding: generated clips -> shapes, dtypes, 16 kHz; wav pairing and resampling; crops; bad inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from emodistill.core.contract import Preprocess
from emodistill.core.data.decode import DecodeError, crop_box, detect_face, fit_audio, load_clip, read_audio, read_video


def _first(root, pattern="Actor_01/*.mp4"):
    return sorted(root.glob(pattern))[0]


def test_decode_generated_clip(synth_small, media):
    path = _first(synth_small)
    video, audio, info = load_clip(path, None, media.DEMO)
    assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8
    assert audio.shape == (media.DEMO.num_samples,) == (32000,) and audio.dtype == np.float32
    assert info["audio_rate"] == 16000 and info["width"] == 96 and info["frames"] == 30
    assert abs(info["audio_seconds"] - 2.0) < 0.01
    assert np.abs(audio).max() > 0.01 and np.abs(audio).max() <= 1.0
    assert not info["warnings"]
    assert video.std() > 5  # a face, not a blank frame


def test_frames_uniform_over_clip(tmp_path, media):
    # frame i has brightness 40 * (i % 6): the sampled indices must be the centres of T equal bins
    path = media.write_clip(tmp_path / "Actor_01/01-01-01-01-01-01-01.mp4", frames=12, audio_seconds=1.0)
    frames, info = read_video(path, 4)
    assert info["frames"] == 12
    idx = [1, 4, 7, 10]  # (k + 0.5) * 12 / 4
    means = frames[:, :, 16:].mean(axis=(1, 2, 3))
    np.testing.assert_allclose(means, [40 * (i % 6) for i in idx], atol=6)


def test_wav_pairing_resamples_48k_stereo(tmp_path, media):
    vid = media.write_clip(tmp_path / "Actor_01/02-01-04-01-01-01-01.mp4", audio_seconds=None)
    wav = media.write_wav(tmp_path / "Actor_01/03-01-04-01-01-01-01.wav", seconds=1.5, rate=48000, channels=2)
    pre = Preprocess(num_frames=4, image_size=32, clip_seconds=2.0, face_crop="none")
    video, audio, info = load_clip(vid, wav, pre)
    assert info["audio_rate"] == 48000 and info["audio_channels"] == 2
    assert abs(info["audio_seconds"] - 1.5) < 0.01
    assert audio.shape == (32000,) and np.all(audio[24100:] == 0)  # 1.5 s of audio, then zero padding
    spec = np.abs(np.fft.rfft(audio[:24000]))
    assert abs(np.argmax(spec) * 16000 / 24000 - 440) < 2  # the tone survives resampling to 16 kHz
    assert video.shape == (4, 32, 32, 3)


def test_read_audio_rate(tmp_path, media):
    wav = media.write_wav(tmp_path / "a.wav", seconds=1.0, rate=22050, channels=1)
    audio, info = read_audio(wav, 16000)
    assert abs(audio.size - 16000) <= 32 and info["audio_rate"] == 22050


def test_fit_audio_crop_and_pad():
    x = np.arange(10, dtype=np.float32)
    np.testing.assert_array_equal(fit_audio(x, 4), [3, 4, 5, 6])
    np.testing.assert_array_equal(fit_audio(x[:3], 5), [0, 1, 2, 0, 0])


@pytest.mark.parametrize("mode,expected", [("center", (30, 0, 130, 100)), ("none", (0, 0, 160, 100)),
                                           ("box", (40, 10, 120, 90))])
def test_crop_modes(mode, expected):
    frames = np.zeros((2, 100, 160, 3), np.uint8)
    pre = Preprocess(face_crop=mode, face_box=(0.25, 0.1, 0.75, 0.9))
    assert crop_box(frames, pre)[0] == expected


def test_haar_falls_back_to_centre_with_debug_log(caplog):
    frames = np.full((3, 120, 200, 3), 128, np.uint8)  # no face anywhere
    assert detect_face(frames) is None
    with caplog.at_level(logging.DEBUG, logger="emodistill.core.data.decode"):
        box, found = crop_box(frames, Preprocess(face_crop="haar"), "blank.mp4")
    assert found is False and box == (40, 0, 160, 120)
    assert any("no face found in blank.mp4" in r.message for r in caplog.records)


def test_haar_box_enlarged_and_clamped(monkeypatch):
    import emodistill.core.data.decode as dec

    monkeypatch.setattr(dec, "detect_face", lambda frames: (100, 50, 40, 40))
    frames = np.zeros((2, 200, 300, 3), np.uint8)
    box, found = crop_box(frames, Preprocess(face_crop="haar", crop_margin=1.5))
    assert found and box == (90, 40, 150, 100)  # 40 * 1.5 = 60 around the centre (120, 70)
    monkeypatch.setattr(dec, "detect_face", lambda frames: (0, 0, 150, 150))
    box, _ = crop_box(frames, Preprocess(face_crop="haar", crop_margin=2.0))
    assert box == (0, 0, 200, 200)  # larger than the frame: shrunk to it, shifted inside


def test_short_clip_repeats_frames_with_warning(tmp_path, media):
    path = media.write_clip(tmp_path / "Actor_01/01-01-01-01-01-01-01.mp4", frames=3)
    video, audio, info = load_clip(path, None, media.DEMO)
    assert video.shape[0] == 8
    assert any("frames repeated" in w for w in info["warnings"])


def test_mp4_without_audio_gives_zeros_with_warning(tmp_path, media):
    path = media.write_clip(tmp_path / "Actor_01/01-01-01-01-01-01-01.mp4", audio_seconds=None)
    video, audio, info = load_clip(path, None, media.DEMO)
    assert audio.shape == (32000,) and not audio.any()
    assert any("no audio track" in w for w in info["warnings"])


def test_video_only_without_wav_warns(tmp_path, media):
    path = media.write_clip(tmp_path / "Actor_01/02-01-01-01-01-01-01.mp4", audio_seconds=None)
    _, audio, info = load_clip(path, None, media.DEMO)
    assert not audio.any() and any("without its audio file" in w for w in info["warnings"])


@pytest.mark.parametrize("content", [b"", b"\x00" * 1000, b"ftypisom this is not a video" * 40])
def test_corrupt_mp4_raises(tmp_path, content, media):
    path = tmp_path / "Actor_01/01-01-01-01-01-01-01.mp4"
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(DecodeError):
        load_clip(path, None, media.DEMO)


def test_truncated_mp4_raises(synth_small, tmp_path, media):
    data = _first(synth_small).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])  # the moov index sits at the end: gone
    with pytest.raises(DecodeError, match="cannot open|no video"):
        load_clip(path, None, media.DEMO)


@pytest.mark.parametrize("keep", [0.6, 0.93])
def test_truncated_faststart_mp4(tmp_path, media, keep):
    # moov at the start: a cut file still opens; most of it there -> used with a warning, else skipped
    data = media.write_clip(tmp_path / "full.mp4", frames=40, faststart=True).read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: int(len(data) * keep)])
    if keep < 0.9:
        with pytest.raises(DecodeError, match="truncated: only"):
            load_clip(path, None, media.DEMO)
        return
    video, _, info = load_clip(path, None, media.DEMO)
    assert video.shape == (8, 64, 64, 3)
    assert 20 <= info["frames"] < 40 and any("truncated" in w for w in info["warnings"])


@pytest.mark.parametrize("seconds", [0.0, None])
def test_empty_wav_raises(tmp_path, seconds, media):
    vid = media.write_clip(tmp_path / "Actor_01/02-01-04-01-01-01-01.mp4", audio_seconds=None)
    wav = tmp_path / "Actor_01/03-01-04-01-01-01-01.wav"
    if seconds is None:
        wav.write_bytes(b"")
    else:
        media.write_wav(wav, seconds=0.0)
    with pytest.raises(DecodeError, match="audio file .*(empty|cannot open)"):
        load_clip(vid, wav, media.DEMO)
