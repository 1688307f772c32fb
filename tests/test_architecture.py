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
    assert "2 kept, 0 broken" in r.stdout


def test_a_core_module_importing_a_stage_breaks_the_contract(tmp_path):
    installed_layout(tmp_path)
    (tmp_path / "emodistill" / "core" / "sneaky.py").write_text("from emodistill.export.onnx import export_onnx\n")
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "emodistill.core is not allowed to import emodistill.export" in r.stdout
    assert "emodistill.core.sneaky -> emodistill.export.onnx" in r.stdout


def test_an_import_cycle_between_sibling_modules_breaks_the_acyclic_contract(tmp_path):
    installed_layout(tmp_path)
    app = tmp_path / "emodistill" / "app"
    (app / "loop_a.py").write_text("from . import loop_b\n")
    (app / "loop_b.py").write_text("def f():\n    from . import loop_a\n")  # a lazy import counts too
    r = lint_imports(tmp_path)
    assert r.returncode == 1, r.stdout[-3000:]
    assert "No cycles are allowed in emodistill.app" in r.stdout


def test_no_module_imports_itself_back(tmp_path):
    """The import graph of the installed layout has no cycle of modules at all (Tarjan's strongly connected
    components over grimp's graph, lazy imports included): the predict <-> timeline circle of #26 is gone."""
    grimp = pytest.importorskip("grimp")
    installed_layout(tmp_path)
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("emodistill", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) - {m}) for m in graph.modules}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # recursive Tarjan; the package is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in sorted(edges):
        if m not in index:
            visit(m)
    assert cycles == [], cycles
