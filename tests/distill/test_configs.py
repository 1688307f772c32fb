"""The distill recipes under configs/distill: valid, self-documenting, and the baseline matches the demo."""

from pathlib import Path

import pytest

from emodistill.distill.config import DistillConfig
from emodistill.core.config import ConfigError, load_config
from emodistill.core.utils import CONFIG_DIR

RECIPES = sorted((CONFIG_DIR / "distill").glob("*.yaml"))


def test_recipes_exist():
    assert {"demo", "demo_ce", "ravdess_s"} <= {p.stem for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_loads_and_first_line_is_its_command(path: Path):
    assert path.read_text().splitlines()[0] == f"# emodistill distill --config configs/distill/{path.name}"
    cfg = load_config(DistillConfig, path)
    assert cfg.data is not None and cfg.toy is None


def test_demo_ce_is_the_demo_with_kd_off():
    demo = load_config(DistillConfig, CONFIG_DIR / "distill" / "demo.yaml").model_dump()
    ce = load_config(DistillConfig, CONFIG_DIR / "distill" / "demo_ce.yaml").model_dump()
    assert demo["distill"]["kd"] is True and ce["distill"]["kd"] is False
    for d in (demo, ce):
        d["distill"].pop("kd"), d.pop("output_dir")
    assert demo == ce
    same = load_config(DistillConfig, CONFIG_DIR / "distill" / "demo.yaml",
                       ["distill.kd=false", "output_dir=runs/distill/demo_ce"])
    assert same == load_config(DistillConfig, CONFIG_DIR / "distill" / "demo_ce.yaml")


def test_real_recipe_names_real_models():
    cfg = load_config(DistillConfig, CONFIG_DIR / "distill" / "ravdess_s.yaml")
    assert cfg.student.name == "student_s" and cfg.teacher.checkpoint
    assert {"ce", "kd"} <= set(cfg.distill.losses)


def test_unknown_key_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="tempreture|train"):
        load_config(DistillConfig, CONFIG_DIR / "distill" / "demo.yaml", ["train.tempreture=2"])
