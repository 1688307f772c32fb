from typing import Literal

import pytest

from emodistill.core.config import BaseConfig, ConfigError, load_config


class Inner(BaseConfig):
    lr: float = 1e-3
    mode: Literal["a", "b"] = "a"


class Outer(BaseConfig):
    name: str = "x"
    inner: Inner = Inner()


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("# emodistill something --config c.yaml\nname: y\ninner:\n  lr: 0.5\n")
    cfg = load_config(Outer, p, ["inner.mode=b", "inner.lr=2"])
    assert cfg.name == "y" and cfg.inner.lr == 2.0 and cfg.inner.mode == "b"


def test_unknown_key_names_key_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config(Outer, None, ["inner.lrr=1"])
    assert "inner.lrr" in str(e.value) and "lr, mode" in str(e.value)


def test_wrong_type_and_literal(tmp_path):
    with pytest.raises(ConfigError, match="inner.lr"):
        load_config(Outer, None, ["inner.lr=fast"])
    with pytest.raises(ConfigError, match="'a' or 'b'"):
        load_config(Outer, None, ["inner.mode=c"])


def test_bad_override_syntax():
    with pytest.raises(ConfigError, match="key.path=value"):
        load_config(Outer, None, ["inner.lr"])
