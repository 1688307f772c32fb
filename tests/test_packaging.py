"""The distribution: one top-level import name, the recipes / profiles / budgets / model configs inside the wheel,
and an installed wheel that runs from a folder outside any checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "student", "distill", "export")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "-q", "-w", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    (whl,) = out.glob("emodistill-*.whl")
    return whl


def test_wheel_has_one_top_level_name_and_the_package_data(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert tops == {"emodistill"}
    for stage in STAGES:
        assert f"emodistill/{stage}/__init__.py" in names
    packaged = {n for n in names if n.endswith((".yaml", ".json"))}
    for f in (REPO / "configs").rglob("*.yaml"):
        assert f"emodistill/configs/{f.relative_to(REPO / 'configs').as_posix()}" in packaged
    for f in (REPO / "teacher" / "configs").glob("*.json"):
        assert f"emodistill/teacher/configs/{f.name}" in packaged
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["emodistill"]


INSTALLED_CHECK = r"""
import sys
from pathlib import Path
import emodistill, emodistill.core.utils as u
assert u.REPO_ROOT is None and u.git_commit() is None, (u.REPO_ROOT, u.git_commit())
assert Path(emodistill.__file__).parent == Path(sys.argv[1]) / "emodistill", emodistill.__file__
assert u.CONFIG_DIR == Path(sys.argv[1]) / "emodistill" / "configs", u.CONFIG_DIR
from emodistill.core.config import load_config, packaged_configs
from emodistill.distill.config import DistillConfig
from emodistill.teacher.train import TeacherTrainConfig
from emodistill.core.data import DataConfig
from emodistill.export.profiles import list_budgets, list_profiles, load_budget, load_profile
from emodistill.teacher.weights import reference_config
kinds = {"distill": DistillConfig, "teacher": TeacherTrainConfig, "data": DataConfig}
for name in packaged_configs():
    load_config(kinds[name.split("/")[0]], name)
load_config(DistillConfig, "ravdess_s"); load_config(DistillConfig, "configs/distill/demo.yaml")
for p in list_profiles():
    load_profile(p); load_budget(p)
for b in list_budgets():
    load_budget(b)
for n in ("lfm2-700m", "parakeet-ctc-0.6b", "siglip2-base-patch16-224"):
    reference_config(n)
print("OK", len(packaged_configs()), len(list_profiles()), len(list_budgets()))
"""


def test_installed_wheel_finds_its_data_outside_the_checkout(wheel, tmp_path):
    """The wheel unpacked into a bare folder (no checkout beside it) loads every packaged recipe, profile and
    budget by name; the command line lists them."""
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--target",
                        str(site), str(wheel)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    installed = {p.name for p in site.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"emodistill"}, installed  # bin/: the console script
    work = tmp_path / "empty"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-c", INSTALLED_CHECK, str(site)], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    # what the checkout holds is what the installed wheel must find: recipes, hardware profiles, budgets
    recipes = sum(len(list((REPO / "configs" / k).rglob("*.yaml"))) for k in ("data", "distill", "teacher"))
    profiles = len(list((REPO / "configs" / "hardware").glob("*.yaml")))
    budgets = len(list((REPO / "configs" / "hardware" / "budgets").glob("*.yaml")))
    assert min(recipes, profiles, budgets) > 0
    assert r.stdout.split() == ["OK", str(recipes), str(profiles), str(budgets)], r.stdout
    r = subprocess.run([sys.executable, "-m", "emodistill.app.cli", "config", "list"], cwd=work, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(site / "emodistill" / "configs") in r.stdout and "distill/ravdess_s" in r.stdout
    assert "rtx3050-laptop-4gb-realtime" in r.stdout and "rtx3050-desktop-8gb" in r.stdout
    assert list(work.iterdir()) == []


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_runs_from_an_empty_folder(wheel, tmp_path):
    """The full install: a fresh venv, the wheel with its training extra, `emodistill` commands from an empty
    folder."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", f"{wheel}[train]"], capture_output=True, text=True,
                       timeout=3000)  # [train]: the base install is the ONNX runtime only (no teacher info)
    assert r.returncode == 0, r.stderr[-3000:]
    work = tmp_path / "empty"
    work.mkdir()
    exe = str(venv / "bin" / "emodistill")
    for cmd in (["env", "--check"], ["config", "list"], ["teacher", "info", "--model", "teacher_lfm2_700m"]):
        r = subprocess.run([exe, *cmd], cwd=work, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    r = subprocess.run([str(py), "-c", "import importlib.util as u; print([n for n in ('teacher', 'student', "
                        "'distill', 'export') if u.find_spec(n)])"], cwd=work, capture_output=True, text=True)
    assert r.stdout.strip() == "[]"
