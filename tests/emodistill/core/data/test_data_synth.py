"""Synthetic generator: RAVDESS design counts, valid names, determinism, cue structure, decodable output."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from emodistill.core.contract import RAVDESS_CLASSES
from emodistill.core.data.decode import read_audio, read_video
from emodistill.core.data.names import parse_name, scan_dataset
from emodistill.core.data.splits import assign_splits
from emodistill.core.data.synth import actor_identity, clip_specs, make_clip, ravdess_name, render_audio, render_video


def test_default_design_matches_ravdess_speech():
    specs = clip_specs(24, "default")
    assert len(specs) == 1440
    per_class = Counter(RAVDESS_CLASSES[e - 1] for _, e, *_ in specs)
    assert per_class == {c: (96 if c == "neutral" else 192) for c in RAVDESS_CLASSES}
    assert set(Counter(a for a, *_ in specs).values()) == {60}
    assert {i for _, e, i, *_ in specs if e == 1} == {"01"}
    assert len(set(specs)) == len(specs)
    for a, e, i, s, r in specs:
        n = parse_name(f"Actor_{a:02d}/" + ravdess_name(e, i, s, r, a))
        assert (n.actor, n.label, n.modality, n.vocal_channel) == (a, e - 1, "av", "speech")


def test_small_design_covers_every_class_in_every_split():
    specs = clip_specs(6, "small")
    split = assign_splits(range(1, 7), "fixed")
    per = Counter((split[a], e) for a, e, *_ in specs)
    assert all(per[(s, e)] >= 1 for s in ("train", "val", "test") for e in range(1, 9))
    assert all(n >= 3 for n in Counter(e for _, e, *_ in specs).values())


def _md5(path) -> str:
    return hashlib.md5(open(path, "rb").read()).hexdigest()


def test_generated_set_is_deterministic_across_processes(synth_small, tmp_path):
    # synth_small was written by a 2-process pool; regenerate a few clips here, in this process
    for spec in [(1, 1, "01", "01", "01"), (4, 5, "02", "02", "02"), (6, 8, "01", "01", "01")]:
        again = make_clip(str(tmp_path), 0, spec)
        ref = synth_small / f"Actor_{spec[0]:02d}" / ravdess_name(spec[1], *spec[2:], spec[0])
        assert _md5(again) == _md5(ref)
        va, vb = read_video(again, 8)[0], read_video(ref, 8)[0]
        np.testing.assert_array_equal(va, vb)


def test_seed_changes_the_data(tmp_path):
    spec = (2, 3, "02", "01", "01")
    a = make_clip(str(tmp_path / "s0"), 0, spec)
    b = make_clip(str(tmp_path / "s1"), 1, spec)
    assert _md5(a) != _md5(b)


def test_small_set_layout_and_decoding(synth_small):
    scan = scan_dataset(synth_small)
    assert len(scan.clips) == 96 and not scan.bad
    assert sorted(p.name for p in synth_small.iterdir() if p.is_dir()) == [f"Actor_{a:02d}" for a in range(1, 7)]
    frames, info = read_video(scan.clips[0].video_path, 30)
    assert info["codec"] == "h264" and (info["width"], info["height"], info["frames"]) == (96, 96, 30)
    audio, ainfo = read_audio(scan.clips[0].video_path)
    assert ainfo["audio_codec"] == "aac" and abs(audio.size / 16000 - 2.0) < 0.01


def _video(emotion, intensity="02", actor=3):
    return render_video(actor_identity(0, actor), emotion, intensity, 0.3, np.random.default_rng(7))


def _audio(emotion, intensity="02", actor=3):
    return render_audio(actor_identity(0, actor), emotion, intensity, "01", 0.3, np.random.default_rng(7))


@pytest.mark.parametrize("a,b", [("neutral", "calm"), ("happy", "surprised"), ("angry", "disgust")])
def test_audio_identical_pairs_differ_in_video(a, b):
    np.testing.assert_array_equal(_audio(a), _audio(b))
    assert np.abs(_video(a).astype(int) - _video(b)).mean() > 0.5


@pytest.mark.parametrize("a,b", [("calm", "happy"), ("fearful", "surprised"), ("sad", "disgust")])
def test_video_identical_pairs_differ_in_audio(a, b):
    np.testing.assert_array_equal(_video(a), _video(b))
    assert np.abs(_audio(a) - _audio(b)).mean() > 1e-3


def test_every_class_is_unique_given_both_modalities():
    sigs = {}
    for e in RAVDESS_CLASSES:
        sigs[e] = (hashlib.md5(_audio(e).tobytes()).hexdigest(), hashlib.md5(_video(e).tobytes()).hexdigest())
    assert len(set(sigs.values())) == 8


def test_intensity_scales_the_cue():
    neutral = _video("neutral").astype(float)
    weak = np.abs(_video("angry", "01") - neutral).mean()
    strong = np.abs(_video("angry", "02") - neutral).mean()
    assert 0 < weak < strong


def test_actor_identity_changes_face_and_voice():
    assert np.abs(_video("calm", actor=1).astype(int) - _video("calm", actor=2)).mean() > 5
    f0 = [actor_identity(0, a).f0 for a in range(1, 25)]
    assert max(f0[0::2]) < min(f0[1::2])  # odd actors male (lower voice), even female
