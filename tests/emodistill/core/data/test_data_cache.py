"""Preprocessed cache: content keys, hit / miss / invalidation, bad files skipped and remembered."""

from __future__ import annotations

import os

import numpy as np

from emodistill.core.contract import Preprocess
from emodistill.core.data.cache import build_cache, clip_key, content_hash, read_entry, read_info
from emodistill.core.data.decode import load_clip
from emodistill.core.data.names import scan_dataset
from emodistill.core.data.synth import make_clip


def test_content_hash_follows_bytes_not_names_or_mtimes(tmp_path):
    a = tmp_path / "a.bin"
    a.write_bytes(os.urandom(50_000))
    b = tmp_path / "b.bin"
    b.write_bytes(a.read_bytes())
    os.utime(b, (1, 1))
    assert content_hash(a) == content_hash(b)
    data = bytearray(a.read_bytes())
    data[25_000] ^= 1  # small files are hashed whole
    b.write_bytes(bytes(data))
    os.utime(b, (os.path.getmtime(a),) * 2)
    assert content_hash(a) != content_hash(b)


def test_content_hash_large_file_head_tail_size(tmp_path):
    big = bytearray(os.urandom(1_000_000))
    a = tmp_path / "a.bin"
    a.write_bytes(bytes(big))
    h = content_hash(a)
    for pos in (10, len(big) - 10):
        changed = bytearray(big)
        changed[pos] ^= 1
        a.write_bytes(bytes(changed))
        assert content_hash(a) != h
    a.write_bytes(bytes(big) + b"\0")
    assert content_hash(a) != h


def test_key_depends_on_every_preprocess_field(synth_small):
    clip = scan_dataset(synth_small).clips[0]
    base = Preprocess()
    keys = {clip_key(clip, base)}
    for change in [dict(num_frames=8), dict(image_size=64), dict(sample_rate=8000), dict(clip_seconds=2.0),
                   dict(face_crop="center"), dict(face_box=(0.2, 0.1, 0.8, 0.9)), dict(crop_margin=1.5)]:
        keys.add(clip_key(clip, base.model_copy(update=change)))
    assert len(keys) == 8


def test_hit_miss_invalidation(synth_copy, tmp_path, media):
    clips = scan_dataset(synth_copy).clips
    cache = tmp_path / "cache"
    first = build_cache(clips, media.DEMO, cache, workers=0, progress=False)
    assert (first.decoded, first.hits, len(first.entries)) == (len(clips), 0, len(clips))

    again = build_cache(clips, media.DEMO, cache, workers=0, progress=False)
    assert (again.decoded, again.hits) == (0, len(clips))
    assert [e.key for e in again.entries] == [e.key for e in first.entries]

    # same bytes, new mtime: still a hit
    os.utime(clips[1].video_path, (12345, 12345))
    assert build_cache(clips, media.DEMO, cache, workers=0, progress=False).decoded == 0

    # new content at the same path: only that clip is decoded again, under a new key
    spec = (1, clips[0].label + 1, "01", "01", "01")
    new_path = make_clip(str(tmp_path / "other"), seed=99, spec=spec)
    os.replace(new_path, clips[0].video_path)
    changed = build_cache(clips, media.DEMO, cache, workers=0, progress=False)
    assert (changed.decoded, changed.hits) == (1, len(clips) - 1)
    assert changed.entries[-1].key != first.entries[0].key

    # other preprocessing: everything is a miss
    other = build_cache(clips[:5], media.DEMO.model_copy(update={"image_size": 48}), cache, workers=0, progress=False)
    assert other.decoded == 5
    video, _ = read_entry(other.entries[0].path)
    assert video.shape == (8, 48, 48, 3)


def test_cached_entry_equals_decode(synth_small, tmp_path, media):
    clip = scan_dataset(synth_small).clips[3]
    rep = build_cache([clip], media.DEMO, tmp_path, workers=0, progress=False)
    video, pcm = read_entry(rep.entries[0].path)
    ref_video, ref_audio, _ = load_clip(clip.video_path, None, media.DEMO)
    np.testing.assert_array_equal(video, ref_video)
    assert pcm.dtype == np.int16
    np.testing.assert_allclose(pcm / 32768.0, ref_audio, atol=1e-4)
    assert read_info(rep.entries[0].path)["audio_rate"] == 16000


def test_bad_files_skipped_counted_and_remembered(synth_copy, tmp_path, media):
    corrupt = synth_copy / "Actor_01" / "01-01-02-01-01-02-01.mp4"
    corrupt.write_bytes(os.urandom(4000))
    silent = media.write_clip(synth_copy / "Actor_02" / "01-01-02-01-01-02-02.mp4", audio_seconds=None)
    clips = scan_dataset(synth_copy).clips
    cache = tmp_path / "cache"
    rep = build_cache(clips, media.DEMO, cache, workers=2, progress=False)  # also exercises the process pool
    assert len(rep.entries) == len(clips) - 1 and rep.decoded == len(clips) - 1
    assert [p for p, _ in rep.skipped] == [str(corrupt)]
    assert any(p == str(silent) and "no audio track" in w for p, w in rep.warnings)
    again = build_cache(clips, media.DEMO, cache, workers=0, progress=False)
    assert again.decoded == 0 and "remembered" in again.skipped[0][1]
    assert any(p == str(silent) for p, _ in again.warnings)  # warnings survive in the cache metadata


def test_unreadable_file_is_skipped_not_fatal(synth_copy, tmp_path, media):
    clips = scan_dataset(synth_copy).clips[:3]
    os.remove(clips[1].video_path)
    rep = build_cache(clips, media.DEMO, tmp_path, workers=0, progress=False)
    assert len(rep.entries) == 2 and "cannot read" in rep.skipped[0][1]
