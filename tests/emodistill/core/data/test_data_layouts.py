"""Your own data: `format: folder` and `format: manifest` (CSV / JSONL), label maps, class lists, splits."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from emodistill.core.data import DataConfig, build_datasets
from emodistill.core.data.cache import clip_key
from emodistill.core.data.check import check_dataset, format_report
from emodistill.core.data.decode import load_clip
from emodistill.core.data.layouts import write_layout
from emodistill.core.data.names import Clip, labelled_clips, scan_dataset
from emodistill.core.data.splits import clip_splits


@pytest.fixture(scope="module")
def three_class(tmp_path_factory, synth_small) -> Path:
    """The small synthetic set's happy / sad / angry clips as a folder tree (72 -> 36 clips, 12 per class)."""
    out = tmp_path_factory.mktemp("folder3")
    scan = labelled_clips(synth_small, "ravdess")
    write_layout([c for c in scan.clips if c.emotion in ("happy", "sad", "angry")], out, "folder")
    return out


def test_folder_layout_classes_from_folder_names_and_bad_files_named(three_class, tmp_path, media):
    root = tmp_path / "mine"
    shutil.copytree(three_class, root)
    media.write_wav(root / "happy" / "01-01-03-01-01-01-01.wav", 1.0)        # audio beside its video
    media.write_wav(root / "sad" / "lonely.wav", 1.0)                        # audio without a video
    shutil.copy(root / "happy" / "01-01-03-01-01-01-01.mp4", root / "stray.mp4")  # not in a class folder
    scan = labelled_clips(root, "folder")
    assert scan.class_names == ["angry", "happy", "sad"]
    assert len(scan.clips) == 36 and {scan.class_names[c.label] for c in scan.clips} == {"angry", "happy", "sad"}
    paired = [c for c in scan.clips if c.audio_path]
    assert len(paired) == 1 and paired[0].audio_path.endswith("01-01-03-01-01-01-01.wav")
    reasons = dict(scan.bad)
    assert "not inside a class folder" in reasons[str(root / "stray.mp4")]
    assert "without a video" in reasons[str(root / "sad" / "lonely.wav")]
    assert len(scan.bad) == 2


def test_folder_split_is_stratified_and_given_split_folders_win(three_class, tmp_path):
    names, _ = clip_splits(labelled_clips(three_class, "folder").clips)
    clips = labelled_clips(three_class, "folder").clips
    for split, want in (("train", 8), ("val", 2), ("test", 2)):   # 12 per class cut 4:1:1 in every class
        for label in range(3):
            assert sum(1 for c, n in zip(clips, names) if n == split and c.label == label) == want
    root = tmp_path / "split"
    for split in ("train", "val", "test"):
        for cls in ("happy", "sad"):
            src = next((three_class / cls).glob("*.mp4"))
            (root / split / cls).mkdir(parents=True)
            shutil.copy(src, root / split / cls / f"{split}_{src.name}")
    scan = labelled_clips(root, "folder")
    assert scan.class_names == ["happy", "sad"]
    names, _ = clip_splits(scan.clips)
    assert sorted(names) == ["test", "test", "train", "train", "val", "val"]
    assert all(Path(c.video_path).name.startswith(n) for c, n in zip(scan.clips, names))


def _manifest(tmp_path: Path, lines: list[str], name: str = "clips.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_manifest_csv_bad_rows_named_with_line_numbers_and_counted(three_class, tmp_path):
    v = sorted((three_class / "happy").glob("*.mp4"))
    shutil.copytree(three_class, tmp_path / "videos")
    rel = [f"videos/happy/{p.name}" for p in v]
    path = _manifest(tmp_path, [
        "path,label,speaker,start,end,comment",
        f"{rel[0]},happy,spk1,,,fine",
        "videos/nope.mp4,happy,spk1,,,missing file",
        f"{rel[1]},,spk2,,,no label",
        f"{rel[2]},sad,spk2,abc,,start not a number",
        f"{rel[3]},sad,spk2,1.5,1.0,end before start",
        f"{rel[4]},angry,spk3,0.5,1.5,a segment",
        f"{rel[0]},happy,spk1,,,the same clip again",
        f"{rel[5]},angry,spk3,-1,,negative start",
        f"{rel[6]},angry,spk3,,,,extra field",
    ])
    scan = scan_dataset(path, "manifest")
    bad = dict(scan.bad)
    assert len(scan.bad) == 6
    assert "no such file" in bad[f"{path}:3"] and "label is empty" in bad[f"{path}:4"]
    assert "'abc' is not a number" in bad[f"{path}:5"] and "not after start" in bad[f"{path}:6"]
    assert ">= 0" in bad[f"{path}:9"] and "more fields than the header" in bad[f"{path}:10"]
    assert dict(scan.unused)[f"{path}:8"] == "the same clip as line 2"
    seg = [c for c in scan.clips if c.start is not None]
    assert len(scan.clips) == 2 and len(seg) == 1 and (seg[0].start, seg[0].end) == (0.5, 1.5)
    assert {c.speaker for c in scan.clips} == {"spk1", "spk3"}
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['label'\]"):
        scan_dataset(_manifest(tmp_path, ["path,emotion", f"{rel[0]},happy"], "nolabel.csv"), "manifest")
    with pytest.raises(FileNotFoundError, match="manifest not found"):
        scan_dataset(tmp_path / "missing.csv", "manifest")


def test_manifest_jsonl_given_split_all_or_nothing_and_speaker_splits(three_class, tmp_path):
    files = sorted(three_class.rglob("*.mp4"))
    rows = [{"path": str(p), "label": p.parent.name, "speaker": f"s{i % 6}"} for i, p in enumerate(files)]
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n[1, 2]\n")
    scan = labelled_clips(path, "manifest")
    assert len(scan.clips) == 36 and len(scan.bad) == 2 and "not JSON" in dict(scan.bad)[f"{path}:37"]
    names, actors = clip_splits(scan.clips)
    by_split = {s: {c.speaker for c, n in zip(scan.clips, names) if n == s} for s in ("train", "val", "test")}
    assert not (by_split["train"] & by_split["val"]) and not (by_split["train"] & by_split["test"])
    assert not (by_split["val"] & by_split["test"]) and sum(map(len, by_split.values())) == 6
    rows[0]["split"] = "validation"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    scan = scan_dataset(path, "manifest")
    assert len(scan.clips) == 1 and len(scan.bad) == 35 and "give every row a split, or none" in scan.bad[0][1]
    assert scan.clips[0].split == "val"
    rows[1]["split"] = "holdout"
    path.write_text(json.dumps(rows[1]) + "\n")
    assert "not one of train, val, test" in scan_dataset(path, "manifest").bad[0][1]


def test_label_map_and_recipe_classes(synth_small):
    scan = labelled_clips(synth_small, "ravdess", label_map={"calm": "neutral", "fearful": "fear"})
    assert scan.class_names == ["neutral", "happy", "sad", "angry", "disgust", "surprised", "fear"]
    assert len(scan.clips) == 96 and sum(c.emotion == "neutral" for c in scan.clips) == 24
    scan = labelled_clips(synth_small, "ravdess", classes=["happy", "sad", "angry"])
    assert len(scan.clips) == 36 and len(scan.bad) == 60
    assert any("label 'calm' is not one of the classes ['happy', 'sad', 'angry']" in r for _, r in scan.bad)
    plain = labelled_clips(synth_small, "ravdess")   # the demo's classes and labels, unchanged
    assert plain.class_names[0] == "neutral" and len(plain.class_names) == 8
    assert all(c.label == int(Path(c.video_path).name.split("-")[2]) - 1 for c in plain.clips)


def test_segment_decodes_only_its_part_and_keys_apart(tmp_path, media):
    path = media.write_clip(tmp_path / "long.mp4", frames=40, fps=10, audio_seconds=4.0)   # 4 s
    pre = media.DEMO
    _, a_all, info_all = load_clip(path, None, pre.model_copy(update={"clip_seconds": 4.0}))
    video, audio, info = load_clip(path, None, pre.model_copy(update={"clip_seconds": 4.0}), start=1.0, end=2.5)
    assert info["frames"] == 15 and info_all["frames"] == 40
    assert abs(info["audio_seconds"] - 1.5) < 0.08
    assert np.count_nonzero(audio) < 0.5 * np.count_nonzero(a_all)
    whole = Clip(video_path=str(path), audio_path=None, label=0, emotion="x", actor=1, clip_id="a")
    part = Clip(video_path=str(path), audio_path=None, label=0, emotion="x", actor=1, clip_id="a", start=1.0, end=2.5)
    assert clip_key(whole, pre) != clip_key(part, pre)
    from emodistill.core.data.decode import DecodeError
    with pytest.raises(DecodeError, match="segment"):
        load_clip(path, None, pre, start=9.0, end=10.0)


def test_build_datasets_and_check_on_a_folder_set(three_class, tmp_path):
    root = tmp_path / "f"
    shutil.copytree(three_class, root)
    cfg = DataConfig(root=str(root), format="folder", preprocess=dict(num_frames=4, image_size=32, clip_seconds=1.0,
                                                                      face_crop="center"), workers=0)
    ds = build_datasets(cfg, progress=False)
    assert ds["train"].class_names == ["angry", "happy", "sad"] and [len(ds[s]) for s in ds] == [24, 6, 6]
    report = check_dataset(str(root), format="folder", workers=0, progress=False)
    assert report["clips_ok"] == 36 and report["split"]["unit"] == "clip"
    assert {k: v["total"] for k, v in report["per_class"].items()} == {"angry": 12, "happy": 12, "sad": 12}


def test_data_check_on_unparseable_folder_lists_the_layouts(tmp_path, media):
    media.write_clip(tmp_path / "my_videos" / "happy" / "clip1.mp4")
    media.write_clip(tmp_path / "my_videos" / "sad" / "clip2.mp4")
    res = subprocess.run([sys.executable, "-m", "emodistill.core.data.cli", "data", "check",
                          str(tmp_path / "my_videos"), "--no-progress", "--workers", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    for line in ("format: folder", "happy/clip1.mp4", "format: manifest", "path,label", "format: ravdess",
                 "format: cremad"):
        assert line in res.stdout
    ok = subprocess.run([sys.executable, "-m", "emodistill.core.data.cli", "data", "check",
                         str(tmp_path / "my_videos"), "--data-format", "folder", "--no-progress", "--workers", "0"],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 usable clips of 2 found, 0 bad files" in ok.stdout and "format: folder" not in ok.stdout
    assert format_report(check_dataset(str(tmp_path / "my_videos"), "folder", workers=0, progress=False))
