"""Packaged recipes by name (`emodistill.core.config.resolve_config_path`) and `emodistill config list | show`,
`emodistill profiles`, `emodistill budgets`."""

import json

import pytest

from emodistill.app.cli import main
from emodistill.core.config import ConfigError, packaged_configs, resolve_config_path
from emodistill.core.utils import CONFIG_DIR

RAVDESS_S = CONFIG_DIR / "distill" / "ravdess_s.yaml"


@pytest.mark.parametrize("name", ["ravdess_s", "ravdess_s.yaml", "distill/ravdess_s", "distill/ravdess_s.yaml",
                                  "configs/distill/ravdess_s.yaml"])
def test_a_packaged_recipe_resolves_by_name_from_any_folder(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_config_path(name) == RAVDESS_S


def test_a_file_at_the_given_path_wins_over_the_packaged_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    own = tmp_path / "configs" / "distill" / "ravdess_s.yaml"
    own.parent.mkdir(parents=True)
    own.write_text("# mine\n")
    assert resolve_config_path("configs/distill/ravdess_s.yaml") == own.relative_to(tmp_path)
    assert resolve_config_path("ravdess_s") == RAVDESS_S  # a bare name is the packaged one


def test_an_unknown_name_lists_the_packaged_recipes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config file not found: ravdess_xl .*distill/ravdess_s.*config list"):
        resolve_config_path("ravdess_xl")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_config_path("hardware/rtx3050-laptop-4gb")  # profiles are not recipes


def test_config_list_shows_every_packaged_yaml(capsys):
    assert main(["config", "list", "--json"]) == 0
    cat = json.loads(capsys.readouterr().out)
    listed = {i["path"] for items in cat.values() for i in items}
    assert listed == {str(p) for p in CONFIG_DIR.rglob("*.yaml")}
    assert {f"{i['kind']}/{i['name']}" for i in cat["recipes"]} == set(packaged_configs())
    assert all(i["command"].startswith("emodistill ") for i in cat["recipes"])
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert "distill/ravdess_s" in out and "rtx3050-laptop-4gb-realtime" in out


def test_config_show_prints_the_yaml_and_refuses_an_unknown_name(capsys):
    assert main(["config", "show", "ravdess_s"]) == 0
    assert capsys.readouterr().out == RAVDESS_S.read_text()
    assert main(["config", "show", "rtx3050-laptop-4gb-realtime"]) == 0
    assert capsys.readouterr().out.startswith("# emodistill export")
    assert main(["config", "show", "nope"]) == 2
    assert "config file not found: nope" in capsys.readouterr().err


@pytest.mark.parametrize("section", ["profiles", "budgets"])
def test_profiles_and_budgets_one_line_each(section, capsys):
    assert main([section]) == 0
    lines = capsys.readouterr().out.splitlines()
    folder = CONFIG_DIR / "hardware" / ("budgets" if section == "budgets" else "")
    assert sorted(line.split()[0] for line in lines) == sorted(p.stem for p in folder.glob("*.yaml"))
