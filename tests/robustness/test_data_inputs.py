"""Bad inputs for `emodistill data synth | check | prepare` and the decoder behind them and `predict`."""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from robustness_corpus import Unchanged, assert_clean_error, cli, cli_subprocess, crash_in_worker, snapshot


def write_wav(path: Path, samples: int, rate: int = 8000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.sin(np.arange(samples) / 5) * 8000).astype(np.int16).tobytes())
    return path


def write_huge_y4m(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"YUV4MPEG2 W30000 H30000 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(4096))
    return path


# ----------------------------------------------------------------------------- synth: never touches others' files

def test_synth_overwrite_keeps_folders_it_did_not_write(tmp_path, capsys):
    """Issue 17, data loss 1a: --overwrite deleted every Actor_* folder, synthetic or not."""
    u = tmp_path / "u"
    mine = u / "Actor_07" / "x.wav"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"user data")
    (u / "Actor_02").mkdir()
    (u / "Actor_02" / "notes.txt").write_text("user notes")
    before = {k: v for k, v in snapshot(u).items()}
    r = cli(capsys, "data", "synth", "--size", "small", "--actors", "3", "--out", u, "--overwrite", "--workers", "0",
            "--no-progress")
    assert r.code == 0, r.err
    after = snapshot(u)
    assert all(after.get(k) == v for k, v in before.items() if k != "Actor_02"), "a user file changed"
    manifest = json.loads((u / "synth.json").read_text())
    assert len(manifest["files"]) == 48 and all(len(s) == 64 for s in manifest["files"].values())
    assert "Actor_07/x.wav" not in manifest["files"]

    # a rerun with other parameters and --overwrite: synth's own files go, the user's stay, even in its folders
    mp4 = u / "Actor_03" / sorted(p.name for p in (u / "Actor_03").iterdir())[0]
    mp4.write_bytes(b"edited by the user")  # no longer what synth wrote: it must be refused, not replaced
    r = cli(capsys, "data", "synth", "--size", "small", "--actors", "3", "--seed", "1", "--out", u, "--overwrite",
            "--workers", "0", "--no-progress")
    assert_clean_error(r, str(mp4))
    assert mp4.read_bytes() == b"edited by the user" and mine.read_bytes() == b"user data"
    assert (u / "Actor_02" / "notes.txt").read_text() == "user notes"


def test_synth_refuses_to_overwrite_a_file_it_did_not_write(tmp_path, capsys):
    """Issue 17, data loss 1b: without flags, RAVDESS-named files in a folder without synth.json were overwritten."""
    u = tmp_path / "u"
    clip = u / "Actor_01" / "01-01-01-01-01-01-01.mp4"
    clip.parent.mkdir(parents=True)
    clip.write_bytes(b"a user's recording")
    for flags in ([], ["--overwrite"]):
        with Unchanged(u):
            r = cli(capsys, "data", "synth", "--size", "small", "--actors", "3", "--out", u, "--workers", "0",
                    "--no-progress", *flags)
        assert_clean_error(r, str(clip), "--out")


def test_synth_unreadable_manifest(tmp_path, capsys):
    u = tmp_path / "u"
    u.mkdir()
    (u / "synth.json").write_text("{not json")
    with Unchanged(u):
        r = cli(capsys, "data", "synth", "--size", "small", "--out", u, "--workers", "0", "--no-progress")
    assert_clean_error(r, str(u / "synth.json"))


def test_synth_manifest_paths_are_never_followed_outside(tmp_path, capsys):
    u = tmp_path / "u"
    u.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (u / "synth.json").write_text(json.dumps({"generator": "emodistill.core.data.synth", "version": 1, "seed": 5,
                                              "size": "small", "actors": 3, "files": {"../victim.txt": None}}))
    with Unchanged(tmp_path):
        r = cli(capsys, "data", "synth", "--size", "small", "--actors", "3", "--out", u, "--overwrite",
                "--workers", "0", "--no-progress")
    assert_clean_error(r, str(u / "synth.json"), "../victim.txt")


# ----------------------------------------------------------------------------- data check / prepare

def test_check_missing_folder(tmp_path, capsys):
    r = cli(capsys, "data", "check", "--data", tmp_path / "nope", "--workers", "0", "--no-progress")
    assert_clean_error(r, str(tmp_path / "nope"))


def test_check_lists_bad_files_with_reasons(dataset, capsys):
    """Near-empty audio (issue 17 item 5), a giant y4m behind an .mp4 name (its size, not 'Device or resource
    busy'), a bad name, a 0-byte clip: each listed with its reason; --strict exits 1; nothing changed."""
    short_video = dataset / "Actor_01" / "02-01-05-01-01-01-01.mp4"
    short_video.write_bytes((dataset / "Actor_01").glob("01-*.mp4").__next__().read_bytes())
    short_wav = write_wav(dataset / "Actor_01" / "03-01-05-01-01-01-01.wav", 100)
    giant = write_huge_y4m(dataset / "Actor_02" / "01-01-05-02-02-02-02.mp4")
    badname = dataset / "Actor_03" / "01-01-09-01-01-01-03.mp4"
    badname.write_bytes(b"x")
    empty = dataset / "Actor_03" / "01-01-05-01-02-01-03.mp4"
    empty.write_bytes(b"")
    with Unchanged(dataset):
        r = cli(capsys, "data", "check", "--data", dataset, "--workers", "0", "--no-progress", "--strict")
    assert r.code == 1 and "Traceback" not in r.err
    bad = {line.split(": ", 1)[0].strip(): line.split(": ", 1)[1] for line in r.out.splitlines()
           if line.startswith("  /")}
    assert "only 0.0125 s of audio" in bad[str(short_video)] and str(short_wav) in bad[str(short_video)]
    assert "30000x30000" in bad[str(giant)] and "busy" not in bad[str(giant)]
    assert "emotion code '09'" in bad[str(badname)]
    assert "empty file" in bad[str(empty)]


def test_short_audio_is_an_error_not_a_silent_prediction(clips, checkpoint, tmp_path, capsys):
    """Issue 17 item 5: 100 samples of audio under a 2 s video flipped the prediction without a word."""
    wav = write_wav(tmp_path / "short.wav", 100)
    with Unchanged(tmp_path):
        r = cli(capsys, "predict", clips["happy"], "--wav", wav, "--model", checkpoint)
    assert_clean_error(r, str(wav), "0.0125 s")


def test_audio_much_shorter_than_video_warns(clips, tmp_path):
    from emodistill.core.data.decode import decode_sources

    wav = write_wav(tmp_path / "half.wav", 4000, rate=8000)  # 0.5 s under a 2 s video
    _, audio, info = decode_sources(clips["happy"], wav, 4, 16000)
    assert any("audio covers 0.50 s of the 2.00 s video" in w for w in info["warnings"])


def test_giant_frames_named_by_size(tmp_path, checkpoint):
    """Issue 17: a 30000x30000 y4m reported 'Device or resource busy' (a real user's console: subprocess)."""
    y4m = write_huge_y4m(tmp_path / "giant.y4m")
    with Unchanged(tmp_path):
        r = cli_subprocess("predict", y4m, "--model", checkpoint)
    assert_clean_error(r, str(y4m), "30000x30000")
    assert "busy" not in r.err


def _mkv(path: Path, frames: int, side: int) -> Path:
    with av.open(str(path), "w") as out:
        s = out.add_stream("mpeg4", rate=25)
        s.width = s.height = side
        s.pix_fmt = "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(frames):
            f = av.VideoFrame.from_ndarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8), format="rgb24")
            out.mux(s.encode(f))
        out.mux(s.encode())
    return path


class _CountingContainer:
    """av.open() result that counts frame -> ndarray conversions (each one a full-resolution RGB copy kept)."""

    def __init__(self, container, calls: list):
        self._c, self._calls = container, calls

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __enter__(self):
        self._c.__enter__()
        return self

    def __exit__(self, *exc):
        return self._c.__exit__(*exc)

    def decode(self, *args, **kwargs):
        for frame in self._c.decode(*args, **kwargs):
            yield _CountingFrame(frame, self._calls)


class _CountingFrame:
    def __init__(self, frame, calls: list):
        self._f, self._calls = frame, calls

    def __getattr__(self, name):
        return getattr(self._f, name)

    def to_ndarray(self, *args, **kwargs):
        self._calls.append(1)
        return self._f.to_ndarray(*args, **kwargs)


def test_mkv_memory_does_not_grow_with_clip_length(tmp_path, monkeypatch):
    """Issue 17 item 6: without a frame count (mkv/webm) every frame was kept at full resolution (a 10 s 720p
    mkv peaked at 1.43 GB against 0.73 GB as mp4). Only frames converted to RGB are kept: count them."""
    from emodistill.core.data.decode import read_video

    path = _mkv(tmp_path / "long.mkv", 120, 64)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # the case under test: no declared count
    calls: list = []
    real_open = av.open
    monkeypatch.setattr(av, "open", lambda *a, **k: _CountingContainer(real_open(*a, **k), calls))
    frames, info = read_video(path, 4)
    monkeypatch.undo()
    assert frames.shape == (4, 64, 64, 3) and info["frames"] == 120
    assert len(calls) <= 2 * 4, f"{len(calls)} frames converted and kept for T=4"
    with av.open(str(path)) as c:  # the same frames as a decode that keeps everything
        every = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    np.testing.assert_array_equal(frames, np.stack([every[i] for i in (15, 45, 75, 105)]))


def test_check_never_redecodes_a_crashing_clip_in_the_main_process(dataset, tmp_path, monkeypatch, capsys):
    """Issue 17 item 7: a clip that crashed a worker was decoded again in the main process (taking it down)."""
    import emodistill.core.data.check as check

    crasher = dataset / "Actor_01" / "01-01-05-01-01-01-01.mp4"
    crasher.write_bytes((dataset / "Actor_01").glob("01-*.mp4").__next__().read_bytes())
    marker = Path(str(crasher) + ".decoded-in-main")
    monkeypatch.setattr(check, "inspect_clip", crash_in_worker)
    r = cli(capsys, "data", "check", "--data", dataset, "--workers", "1", "--no-progress")
    assert r.code == 0 and "Traceback" not in r.err
    assert not marker.exists(), "the crashing clip was decoded in the main process"
    assert f"{crasher}: decode worker process crashed on this file" in r.out
    assert "4 usable clips of 5 found" in r.out


def test_prepare_lists_bad_names_and_remembers_reasons_per_file(dataset, tmp_path, capsys):
    """Issue 17: `data prepare` never listed files with bad names, and a remembered skip reason quoted another
    file's path (the same content under two names)."""
    bad_names = [dataset / "Actor_01" / "clip.mp4", dataset / "Actor_02" / "01-01-01-01-01-01-07.mp4"]
    for p in bad_names:
        p.write_bytes(b"x")
    wav_a = write_wav(dataset / "Actor_03" / "03-01-02-01-01-01-03.wav", 100)
    (dataset / "Actor_03" / "02-01-02-01-01-01-03.mp4").write_bytes(next(dataset.glob("Actor_03/01-*.mp4"))
                                                                     .read_bytes())
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"# emodistill data prepare --config {cfg}\nroot: {dataset}\ncache_dir: {tmp_path / 'cache'}\n"
                   "workers: 0\npreprocess: {num_frames: 4, image_size: 32, face_crop: center}\n")
    r = cli(capsys, "data", "prepare", "--config", cfg, "--no-progress")
    assert r.code == 0, r.err
    for p in bad_names:
        assert str(p) in r.out
    assert f"skipped {dataset / 'Actor_03' / '02-01-02-01-01-01-03.mp4'}" in r.out
    # the same bytes under another clip's name: the remembered reason must name this clip's files
    os.rename(wav_a, dataset / "Actor_03" / "03-01-02-01-02-01-03.wav")
    os.rename(dataset / "Actor_03" / "02-01-02-01-01-01-03.mp4", dataset / "Actor_03" / "02-01-02-01-02-01-03.mp4")
    r = cli(capsys, "data", "prepare", "--config", cfg, "--no-progress")
    line = next(ln for ln in r.out.splitlines() if "remembered" in ln)
    assert "03-01-02-01-02-01-03.wav" in line and "03-01-02-01-01-01-03.wav" not in line, line


def test_corrupt_cache_entry_is_named_and_rebuilt(dataset, tmp_path, capsys):
    """Issue 17: a corrupt preprocessed-cache entry ended in a SafetensorError without a path."""
    from emodistill.core.config import load_config
    from emodistill.core.data import DataConfig, build_datasets

    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"# emodistill data prepare --config {cfg}\nroot: {dataset}\ncache_dir: {tmp_path / 'cache'}\n"
                   "workers: 0\npreprocess: {num_frames: 4, image_size: 32, face_crop: center}\n")
    assert cli(capsys, "data", "prepare", "--config", cfg, "--no-progress").code == 0
    entries = sorted((tmp_path / "cache").rglob("*.safetensors"))
    entries[0].write_bytes(entries[0].read_bytes()[:200])  # truncated (a full disk, a killed copy)
    r = cli(capsys, "data", "prepare", "--config", cfg, "--no-progress")
    assert r.code == 0 and "Traceback" not in r.err, r.err
    assert "1 decoded now" in r.out
    ds = build_datasets(load_config(DataConfig, cfg), progress=False)
    entries[1].write_bytes(b"garbage")  # corrupted after the build: the training read names it
    from emodistill.core.data.cache import read_entry

    with pytest.raises(Exception, match=str(entries[1]).replace(".", r"\.")) as e:
        read_entry(entries[1])
    assert "data prepare" in str(e.value) and len(ds["train"]) + len(ds["val"]) + len(ds["test"]) == 4


def test_config_path_works_from_any_folder(tmp_path):
    """Issue 17: `--config configs/...` worked only from the repository root."""
    missing = tmp_path / "no-such-data"
    r = cli_subprocess("data", "prepare", "--config", "configs/data/synth_demo.yaml", "--set", f"root={missing}",
                       cwd=tmp_path)
    assert_clean_error(r, str(missing))  # the config was found; the dataset folder it names is the error
    r = cli_subprocess("data", "prepare", "--config", "configs/data/nope.yaml", cwd=tmp_path)
    assert_clean_error(r, "configs/data/nope.yaml")
