"""`data check` and the CLI: each bad-input case is skipped with its reason or used with a warning."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from emodistill.core.data.cli import main
from emodistill.core.data.cache import build_cache
from emodistill.core.data.check import check_dataset, format_report
from emodistill.core.data.names import scan_dataset


@pytest.fixture
def messy(synth_small, tmp_path, media):
    """3 good actors from the synthetic set plus one file for every bad case."""
    root = tmp_path / "messy"
    for a in (1, 2, 3):
        shutil.copytree(synth_small / f"Actor_{a:02d}", root / f"Actor_{a:02d}")
    good = sorted((root / "Actor_01").glob("*.mp4"))
    cases = {}
    cases["corrupt"] = root / "Actor_04" / "01-01-03-01-01-01-04.mp4"
    cases["corrupt"].parent.mkdir()
    cases["corrupt"].write_bytes(os.urandom(3000))
    cases["truncated"] = root / "Actor_04" / "01-01-04-01-01-01-04.mp4"
    data = good[0].read_bytes()
    cases["truncated"].write_bytes(data[: len(data) // 2])
    cases["no_audio"] = media.write_clip(root / "Actor_04" / "01-01-05-01-01-01-04.mp4", audio_seconds=None)
    cases["empty_wav_video"] = media.write_clip(root / "Actor_04" / "02-01-06-01-01-01-04.mp4", audio_seconds=None)
    cases["empty_wav"] = media.write_wav(root / "Actor_04" / "03-01-06-01-01-01-04.wav", seconds=0.0)
    cases["unparseable"] = root / "Actor_04" / "01-01-09-01-01-01-04.mp4"
    shutil.copy(good[1], cases["unparseable"])
    cases["short"] = media.write_clip(root / "Actor_04" / "01-01-07-01-01-01-04.mp4", frames=3)
    cases["lonely_wav"] = media.write_wav(root / "Actor_04" / "03-01-08-01-01-01-04.wav", seconds=0.5)
    return root, {k: str(v) for k, v in cases.items()}


def test_check_reports_each_case(messy):
    root, cases = messy
    r = check_dataset(str(root), num_frames=8, workers=0, progress=False)
    bad = {b["path"]: b["reason"] for b in r["bad"]}
    warn = {}
    for w in r["warnings"]:
        warn.setdefault(w["path"], []).append(w["warning"])
    assert "cannot open" in bad[cases["corrupt"]]
    assert "cannot open" in bad[cases["truncated"]] or "truncated" in bad[cases["truncated"]]
    assert "emotion code '09'" in bad[cases["unparseable"]]
    assert "empty audio" in bad[cases["empty_wav_video"]]
    assert "without a matching video" in bad[cases["lonely_wav"]]
    assert any("no audio track" in w for w in warn[cases["no_audio"]])
    assert any("frames repeated" in w for w in warn[cases["short"]])
    assert r["files_bad"] == 5
    assert r["clips_ok"] == 48 + 2 and r["frames"]["shorter_than_T"] == 1
    assert r["per_class"]["happy"]["total"] == 6 and r["resolutions"]["96x96"] == 48
    assert r["split"]["actors"] == {"train": [1, 2], "val": [3], "test": [4]}
    text = format_report(r)
    for needle in ("bad files (skipped): 5", "warnings (used)", "happy", "96x96", cases["corrupt"]):
        assert needle in text


def test_cache_build_survives_the_same_files(messy, tmp_path, media):
    root, cases = messy
    clips = scan_dataset(root).clips
    rep = build_cache(clips, media.DEMO, tmp_path / "cache", workers=0, progress=False)
    skipped = dict(rep.skipped)
    assert set(skipped) == {cases["corrupt"], cases["truncated"], cases["empty_wav_video"]}
    assert len(rep.entries) == 50


def test_cli_synth_then_check(tmp_path, capsys):
    out = tmp_path / "tiny"
    assert main(["data", "synth", "--out", str(out), "--size", "small", "--actors", "3", "--workers", "0",
                 "--no-progress"]) == 0
    assert "wrote 48 clips" in capsys.readouterr().out
    report = tmp_path / "report.json"
    assert main(["data", "check", "--data", str(out), "--num-frames", "8", "--workers", "0", "--no-progress",
                 "--json-out", str(report)]) == 0
    text = capsys.readouterr().out
    assert "48 usable clips of 48 found, 0 bad files" in text
    r = json.loads(report.read_text())
    assert r["clips_ok"] == 48 and r["sample_rates"] == {"16000 Hz x1": 48}
    # a different synthetic set into the same folder is refused without --overwrite
    assert main(["data", "synth", "--out", str(out), "--size", "small", "--actors", "3", "--seed", "1",
                 "--workers", "0", "--no-progress"]) == 2  # input error (emodistill.core.errors); nothing written


def test_cli_check_strict_and_empty(messy, tmp_path, capsys):
    root, _ = messy
    assert main(["data", "check", "--data", str(root), "--num-frames", "8", "--workers", "0", "--no-progress"]) == 0
    assert main(["data", "check", "--data", str(root), "--num-frames", "8", "--workers", "0", "--no-progress",
                 "--strict"]) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "check", "--data", str(empty), "--no-progress", "--workers", "0"]) == 1
    capsys.readouterr()


def test_cli_prepare(synth_small, tmp_path, capsys):
    assert main(["data", "prepare", "--config", "configs/data/synth_demo.yaml", "--set", f"root={synth_small}",
                 "--set", f"cache_dir={tmp_path}", "--set", "workers=0", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "train     64 clips" in out and "96 decoded now" in out
