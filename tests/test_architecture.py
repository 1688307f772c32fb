"""The package layers (docs/architecture.md) hold: import-linter's contract in pyproject.toml is kept, and breaks
when a core module imports a stage."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = ("teacher", "student", "distill", "export")  # installed as emodistill.<stage> (pyproject package-dir)

pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")


def installed_layout(dest: Path) -> Path:
    """The package as the wheel lays it out (the stage folders inside `emodistill/`), which import-linter walks."""
    shutil.copytree(REPO / "emodistill", dest / "emodistill", ignore=shutil.ignore_patterns("__pycache__"))
    for stage in STAGES:
        shutil.copytree(REPO / stage, dest / "emodistill" / stage, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repo's contract over the package under `root` (found first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept(tmp_path):
    r = lint_imports(installed_layout(tmp_path))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_a_core_module_importing_a_stage_breaks_the_contract(tmp_path):
    installed_layout(tmp_path)
    (tmp_path / "emodistill" / "core" / "sneaky.py").write_text("from emodistill.export.onnx import export_onnx\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "emodistill.core is not allowed to import emodistill.export" in r.stdout
    assert "emodistill.core.sneaky -> emodistill.export.onnx" in r.stdout
