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
PACKAGES = ("emodistill", "teacher", "student", "distill", "export")

pytest.importorskip("importlinter", reason="import-linter is a dev dependency: pip install -e '.[dev]'")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` with the repo's contract over the packages under `root` (found first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, str(REPO / "pyproject.toml"), "--no-cache"], cwd=root,
                          env=env, capture_output=True, text=True, timeout=300)


def test_layers_contract_is_kept():
    r = lint_imports(REPO)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "1 kept, 0 broken" in r.stdout


def test_a_core_module_importing_a_stage_breaks_the_contract(tmp_path):
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "emodistill" / "core" / "sneaky.py").write_text("from export.onnx import export_onnx\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "emodistill.core is not allowed to import export" in r.stdout
    assert "emodistill.core.sneaky -> export.onnx" in r.stdout
