"""Property-based cases: the RAVDESS name parser and the config loader answer any input with a result or their
own error (naming what is wrong), never with another exception."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emodistill.core.config import ConfigError, load_config
from emodistill.core.contract import RAVDESS_CLASSES
from emodistill.core.data.names import AUDIO_EXTS, VIDEO_EXTS, NameParseError, parse_name

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

two = st.sampled_from(["01", "02"])


@st.composite
def valid_ravdess(draw):
    modality = draw(st.sampled_from(["01", "02", "03"]))
    channel = draw(two)
    emotion = draw(st.integers(1, 6 if channel == "02" else 8))
    intensity = "01" if emotion == 1 else draw(two)
    actor = draw(st.integers(1, 24))
    codes = [modality, channel, f"{emotion:02d}", intensity, draw(two), draw(two), f"{actor:02d}"]
    ext = draw(st.sampled_from(AUDIO_EXTS if modality == "03" else VIDEO_EXTS))
    return f"Actor_{actor:02d}/{'-'.join(codes)}{ext}", codes


@FAST
@given(valid_ravdess())
def test_every_valid_ravdess_name_parses_to_its_codes(case):
    path, codes = case
    c = parse_name(path)
    assert c.label == int(codes[2]) - 1 and c.emotion == RAVDESS_CLASSES[c.label]
    assert c.actor == int(codes[6]) and c.modality == {"01": "av", "02": "video", "03": "audio"}[codes[0]]
    assert c.vocal_channel == {"01": "speech", "02": "song"}[codes[1]]
    assert c.clip_id == "-".join(codes[1:])


odd = st.one_of(st.text(string.digits, max_size=3), st.text(max_size=3),
                st.sampled_from(["00", "03", "08", "09", "24", "25", "²³", "١٢", "0x", "-1", "", "1"]))


@FAST
@given(valid_ravdess(), st.integers(0, 8), odd)
def test_any_name_parses_or_says_why(case, where, value):
    """One code (or the Actor_ folder's number, or the extension) of a valid name replaced by anything. Unicode
    digits ('²', '١') passed str.isdigit() and then broke int(): a ValueError that was not a NameParseError,
    which ended a whole dataset scan."""
    path, codes = case
    folder, name = path.split("/")
    stem, ext = name.rsplit(".", 1)
    parts = stem.split("-")
    if where < 7:
        parts[where] = value
    elif where == 7:
        folder = "Actor_" + value
    else:
        ext = value
    try:
        c = parse_name(f"{folder}/{'-'.join(parts)}.{ext}")
    except NameParseError as e:
        assert str(e)
        return
    assert 0 <= c.label < 8 and 1 <= c.actor <= 24


# ----------------------------------------------------------------------------- the config loader

from emodistill.core.data import DataConfig  # noqa: E402

yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                         st.text(max_size=10), st.sampled_from(["2001-13-01", "1e400", "~", "!!binary x", "{", "]"]))
keys = st.one_of(st.sampled_from(["root", "format", "preprocess", "num_frames", "split", "fold", "workers",
                                  "augment", "image_size", "face_crop"]), st.text(max_size=8))
values = st.recursive(yaml_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(keys, inner, max_size=4)), max_leaves=12)


@FAST
@given(st.one_of(st.text(max_size=200), st.binary(max_size=100),
                 st.dictionaries(keys, values, max_size=6).map(lambda d: yaml.safe_dump(d))))
def test_any_config_file_loads_or_names_the_problem(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    try:
        cfg = load_config(DataConfig, path)
    except ConfigError as e:
        assert str(path) in str(e) or "override" in str(e)
        return
    assert isinstance(cfg, DataConfig)


@FAST
@given(st.lists(st.one_of(st.text(max_size=30),
                          st.tuples(st.sampled_from(["root", "preprocess.num_frames", "fold", "preprocess", "x.y",
                                                     "root.z", ".", "a..b"]),
                                    st.sampled_from(["", "3", "-1", "[1, 2]", "{a: 1}", "2001-13-01", "{", "null",
                                                     "data/x", "1e999"]))
                          .map("=".join)), max_size=4))
def test_any_override_applies_or_names_the_key(overrides):
    try:
        cfg = load_config(DataConfig, None, ["root=data", *overrides])
    except ConfigError as e:
        assert str(e)
        return
    assert isinstance(cfg, DataConfig)


def test_a_binary_config_file_is_named(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(DataConfig, path)
