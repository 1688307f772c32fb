"""`emodistill env`: the real stack passes `--check`; a broken native library is a FAIL line, not a traceback."""

import os
import subprocess
import sys

from emodistill.app.env import FAIL, Row, render

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _env(*args, pythonpath=None):
    env = dict(ENV)
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run([sys.executable, "-m", "emodistill.app.cli", "env", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_env_check_passes_on_this_install():
    r = _env("--check")
    assert r.returncode == 0, r.stdout + r.stderr
    for piece in ("torch build", "torchaudio native library", "torchvision native library", "ONNX Runtime providers",
                  "CUDA GPUs", "[dev]"):
        assert piece in r.stdout
    assert "all required pieces work" in r.stdout
    dev = next(line for line in r.stdout.splitlines() if "[dev]" in line)
    assert dev.split()[0] == "ok" and "does not import" not in dev, dev  # import-linter imports as `importlinter`


def test_broken_torchaudio_is_a_fail_line_with_the_fix(tmp_path):
    # A torchaudio whose native library does not load beside this torch, as 2.11.1 did beside torch 2.11.0; it sits
    # first on PYTHONPATH of the child only, so the venv is untouched. Its metadata claims the drifted release too.
    pkg = tmp_path / "torchaudio"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "raise OSError('Could not load this library: libtorchaudio.so (undefined symbol: "
        "torch_exception_get_what_without_backtrace)')\n")
    dist = tmp_path / "torchaudio-2.11.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: torchaudio\nVersion: 2.11.1\n")
    r = _env("--check", pythonpath=tmp_path)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    lines = r.stdout.splitlines()
    native = next(i for i, ln in enumerate(lines) if "torchaudio native library" in ln)
    assert "FAIL" in lines[native] and "undefined symbol" in lines[native]
    assert 'fix: pip install "torch==' in lines[native + 1] and '"torchaudio==' in lines[native + 1]
    pinned = next(ln for ln in lines if ln.split()[1:2] == ["torchaudio"])
    assert "FAIL" in pinned and "2.11.1 (needs ==" in pinned
    assert "required piece(s) FAIL" in r.stdout
    # without --check the table is still printed and the exit is 0 (a report, not a gate)
    assert _env(pythonpath=tmp_path).returncode == 0


def test_render_counts_only_required_failures():
    rows = [Row("packages", "a", "1.0", "ok", required=True), Row("extras", "[x]", "missing", "warn", "pip install x"),
            Row("runtimes", "b", "broken", FAIL, "fix b", required=True)]
    text = render(rows)
    assert "1 required piece(s) FAIL: b" in text
    assert "fix: pip install x" in text and "fix: fix b" in text
