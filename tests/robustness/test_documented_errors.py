"""Every documented error case (docs/errors.md, "Documented cases") run as written: its exit code and its message.

The table is the documentation users read; this test keeps it true. A row's placeholders are filled with tiny
artifacts of the corpus (tests/robustness/conftest.py).
"""

from __future__ import annotations

import json
import re
import shlex
import shutil

import pytest
from robustness_corpus import REPO, cli, toy_recipe

DOC = REPO / "docs" / "errors.md"


def documented_cases() -> list[tuple[str, int, str]]:
    """(command, exit code, what the message says) of each row of the table under "## Documented cases"."""
    text = DOC.read_text().split("## Documented cases", 1)[1]
    rows = []
    for line in text.splitlines():
        m = re.match(r"\| `(emodistill .+?)` \| (\d+) \| `(.+)` \|$", line.strip())
        if m:
            rows.append((m.group(1), int(m.group(2)), m.group(3)))
    return rows


CASES = documented_cases()


def record(command: str, r) -> None:
    """With ROBUSTNESS_TABLE=FILE, append the case's exit code and last error line (the closing note's table)."""
    import os

    if os.environ.get("ROBUSTNESS_TABLE"):
        lines = [ln for ln in r.err.splitlines() if ln.strip()] or [""]
        err = next((ln for ln in lines if ln.startswith("error:")), lines[-1])
        with open(os.environ["ROBUSTNESS_TABLE"], "a") as f:
            f.write(json.dumps({"case": command, "code": r.code, "message": err[:400]}) + "\n")


def test_the_table_is_read():
    assert len(CASES) >= 15, CASES
    assert {code for _, code, _ in CASES} >= {2, 5}


@pytest.fixture(scope="module")
def placeholders(tmp_path_factory, onnx_export, checkpoint, clips) -> dict[str, str]:
    d = tmp_path_factory.mktemp("documented")
    sidecar = json.loads((onnx_export / "model.json").read_text())
    engine = d / "engine"
    engine.mkdir()
    (engine / "model.engine").write_bytes(b"not run here")
    (engine / "model.json").write_text(json.dumps(sidecar))
    engine3 = d / "engine3"
    engine3.mkdir()
    (engine3 / "model.engine").write_bytes(b"not run here")
    edited = json.loads(json.dumps(sidecar))
    edited["input_contract"]["class_names"] = edited["input_contract"]["class_names"][:3]
    (engine3 / "model.json").write_text(json.dumps(edited))
    run = d / "run"
    run.mkdir()
    shutil.copytree(checkpoint, run / "best")
    toy = toy_recipe(d / "toy.yaml", d / "toy-out")
    return {"clip": str(clips["happy"]), "onnx": str(onnx_export / "model.onnx"),
            "export": str(onnx_export), "engine": str(engine / "model.engine"),
            "engine3": str(engine3 / "model.engine"), "student": str(checkpoint), "run": str(run), "toy": str(toy),
            "missing": str(d / "does-not-exist")}


@pytest.mark.parametrize("command,code,says", CASES, ids=[c[0][11:60] for c in CASES])
def test_documented_case(command, code, says, placeholders, tmp_path, monkeypatch, capsys):
    values = {**placeholders, "out": str(tmp_path / "new-out")}
    monkeypatch.chdir(tmp_path)  # "run from an empty folder"
    argv = [a.format(**values) for a in shlex.split(command)[1:]]
    r = cli(capsys, *argv)
    record(command, r)
    assert "Traceback" not in r.err, r.err[-3000:]
    assert r.code == code, f"{command}: exit {r.code}, documented {code}; stderr: {r.err[-1500:]}"
    assert says.format(**values) in r.err + r.out, f"{command}: {says!r} not in: {r.err[-1500:]}"
