"""RAVDESS and CREMA-D file names: every code, rejection reasons, pairing of video-only + audio-only files."""

from __future__ import annotations

from pathlib import Path

import pytest

from emodistill.core.contract import CREMAD_CLASSES, RAVDESS_CLASSES
from emodistill.core.data.names import FORMATS, NameParseError, parse_name, scan_dataset


def rav(mm="01", vv="01", ee="03", ii="02", ss="01", rr="02", aa="12", ext=".mp4", folder=None) -> str:
    folder = folder or f"Actor_{aa}"
    return f"{folder}/{mm}-{vv}-{ee}-{ii}-{ss}-{rr}-{aa}{ext}"


def test_ravdess_full_name():
    n = parse_name(rav(), "ravdess")
    assert (n.label, n.emotion, n.actor, n.modality, n.vocal_channel, n.intensity, n.statement, n.repetition) == \
        (2, "happy", 12, "av", "speech", "strong", "01", "02")
    assert n.clip_id == "01-03-02-01-02-12"


@pytest.mark.parametrize("code,modality,ext", [("01", "av", ".mp4"), ("02", "video", ".mp4"), ("03", "audio", ".wav")])
def test_ravdess_modality_codes(code, modality, ext):
    assert parse_name(rav(mm=code, ext=ext)).modality == modality


@pytest.mark.parametrize("code,channel", [("01", "speech"), ("02", "song")])
def test_ravdess_vocal_channel(code, channel):
    assert parse_name(rav(vv=code)).vocal_channel == channel


@pytest.mark.parametrize("code", [f"{i:02d}" for i in range(1, 9)])
def test_ravdess_every_emotion(code):
    n = parse_name(rav(ee=code, ii="01"))
    assert n.label == int(code) - 1 and n.emotion == RAVDESS_CLASSES[int(code) - 1]


@pytest.mark.parametrize("ii,intensity", [("01", "normal"), ("02", "strong")])
def test_ravdess_intensity(ii, intensity):
    assert parse_name(rav(ii=ii)).intensity == intensity


@pytest.mark.parametrize("field", ["ss", "rr"])
@pytest.mark.parametrize("code", ["01", "02"])
def test_ravdess_statement_repetition(field, code):
    n = parse_name(rav(**{field: code}))
    assert (n.statement if field == "ss" else n.repetition) == code


@pytest.mark.parametrize("actor", [1, 2, 23, 24])
def test_ravdess_actor(actor):
    assert parse_name(rav(aa=f"{actor:02d}")).actor == actor


@pytest.mark.parametrize("kwargs,reason", [
    ({"mm": "04"}, "modality code '04'"),
    ({"vv": "03"}, "vocal channel code '03'"),
    ({"ee": "09"}, "emotion code '09'"),
    ({"ee": "00"}, "emotion code '00'"),
    ({"ii": "03"}, "intensity code '03'"),
    ({"ss": "03"}, "statement code '03'"),
    ({"rr": "00"}, "repetition code '00'"),
    ({"aa": "25"}, "actor code '25'"),
    ({"aa": "00"}, "actor code '00'"),
    ({"ee": "01", "ii": "02"}, "neutral"),
    ({"vv": "02", "ee": "07"}, "song"),
    ({"mm": "03", "ext": ".mp4"}, "needs an audio file"),
    ({"mm": "01", "ext": ".wav"}, "needs a video file"),
    ({"aa": "05", "folder": "Actor_06"}, "does not match its folder"),
    ({"aa": "1"}, "actor code '1'"),
])
def test_ravdess_rejects_with_reason(kwargs, reason):
    with pytest.raises(NameParseError, match=reason):
        parse_name(rav(**kwargs))


@pytest.mark.parametrize("name", ["foo.mp4", "01-01-03-02-01-02.mp4", "01-01-03-02-01-02-12-01.mp4", "a-b-c-d-e-f-g.mp4"])
def test_ravdess_malformed(name):
    with pytest.raises(NameParseError):
        parse_name(name)


@pytest.mark.parametrize("code,emotion", [("NEU", "neutral"), ("HAP", "happy"), ("SAD", "sad"), ("ANG", "angry"),
                                          ("FEA", "fearful"), ("DIS", "disgust")])
def test_cremad_emotions(code, emotion):
    n = parse_name(f"VideoFlash/1001_DFA_{code}_XX.flv", "cremad")
    assert n.emotion == emotion and n.label == CREMAD_CLASSES.index(emotion) and n.actor == 1001
    assert n.modality == "av"


@pytest.mark.parametrize("level,intensity", [("LO", "low"), ("MD", "medium"), ("HI", "high"), ("XX", "unspecified")])
def test_cremad_levels(level, intensity):
    n = parse_name(f"AudioWAV/1091_IEO_ANG_{level}.wav", "cremad")
    assert n.intensity == intensity and n.modality == "audio" and n.actor == 1091


@pytest.mark.parametrize("name,reason", [("1000_DFA_ANG_XX.flv", "actor"), ("1092_DFA_ANG_XX.flv", "actor"),
                                         ("1001_XYZ_ANG_XX.flv", "sentence"), ("1001_DFA_CAL_XX.flv", "emotion"),
                                         ("1001_DFA_ANG_ZZ.flv", "level"), ("1001_DFA_ANG.flv", "4 underscore")])
def test_cremad_rejects(name, reason):
    with pytest.raises(NameParseError, match=reason):
        parse_name(name, "cremad")


def test_format_registry():
    assert {"ravdess", "cremad"} <= set(FORMATS.names())
    assert FORMATS.create("cremad").class_names == CREMAD_CLASSES
    with pytest.raises(KeyError, match="unknown data format"):
        FORMATS.create("iemocap")


def _touch(root: Path, rel: str) -> str:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"x")
    return str(p)


def test_scan_pairs_and_reports(tmp_path):
    av_only = _touch(tmp_path, "Actor_01/01-01-03-01-01-01-01.mp4")
    vid = _touch(tmp_path, "Actor_01/02-01-04-01-01-01-01.mp4")
    wav = _touch(tmp_path, "Actor_01/03-01-04-01-01-01-01.wav")
    lonely_wav = _touch(tmp_path, "Actor_02/03-01-05-01-01-01-02.wav")
    dup_video = _touch(tmp_path, "Actor_01/02-01-03-01-01-01-01.mp4")
    bad = _touch(tmp_path, "Actor_02/01-01-09-01-01-01-02.mp4")
    _touch(tmp_path, "Actor_02/readme.txt")
    _touch(tmp_path, ".emodistill_cache/01-01-03-01-01-01-01.mp4")  # hidden folders are not scanned
    scan = scan_dataset(tmp_path, "ravdess")
    by_video = {c.video_path: c for c in scan.clips}
    assert set(by_video) == {av_only, vid}
    assert by_video[av_only].audio_path is None
    assert by_video[vid].audio_path == wav and by_video[vid].label == 3
    reasons = dict(scan.bad)
    assert "without a matching video" in reasons[lonely_wav]
    assert "emotion code '09'" in reasons[bad]
    assert dup_video in dict(scan.unused)


def test_scan_cremad_layout(tmp_path):
    flv = _touch(tmp_path, "VideoFlash/1001_DFA_ANG_XX.flv")
    wav = _touch(tmp_path, "AudioWAV/1001_DFA_ANG_XX.wav")
    other = _touch(tmp_path, "VideoFlash/1002_IEO_HAP_HI.flv")
    scan = scan_dataset(tmp_path, "cremad")
    got = {c.video_path: c.audio_path for c in scan.clips}
    assert got == {flv: wav, other: None}
    assert not scan.bad


def test_scan_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError):
        scan_dataset(tmp_path / "nope")
