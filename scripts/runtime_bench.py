"""What ships to the edge box, before and after: install size, `predict` wall and peak RSS on a clip, `--stream` over
a long video, and the same answers (issue 24).

    python scripts/runtime_bench.py --before-python /work/venv/bin/python --before-path /tmp/before_site \\
        --after-python /tmp/rtvenv/bin/python --data outputs/demo/data \\
        --model outputs/demo/export/onnx_fp32/model.onnx --model outputs/demo/export/onnx_int8/model.onnx \\
        --long-video /tmp/long5.mp4 --out /tmp/runtime_bench

"Before" is the code and the install as they were (the full training stack, torch imported by `predict`); "after"
is this checkout's code in the runtime-only install (`pip install emodistill`). Every figure is measured here, one
process per run, in one run of this script; wall and RSS are medians over --repeats runs. Parity: each side's
Predictor over the test split of --data (one process per side), probabilities compared clip by clip; a stream's
timeline.json windows compared field by field (timings excepted).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PROBS = r'''
import json, sys
from pathlib import Path
from emodistill.app.predictor import Predictor
from emodistill.core.data.names import labelled_clips
from emodistill.core.data.splits import clip_splits
model, data, out = sys.argv[1:4]
scan = labelled_clips(data, "ravdess")
names, _ = clip_splits(scan.clips)
clips = [c for c, n in zip(scan.clips, names) if n == "test"]
p = Predictor(model)
res = {}
for c in clips:
    r = p(c.video_path, c.audio_path)
    res[Path(c.video_path).name] = r["probabilities"]
Path(out).write_text(json.dumps(res))
print(len(res))
'''


def site_size(python: str) -> int:
    """Bytes of the venv's installed packages (site-packages), pip and setuptools left out."""
    site = subprocess.check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   text=True).strip()
    total = 0
    for root, _, files in os.walk(site):
        if any(part in root for part in ("/pip", "/setuptools", "/_distutils_hack")):
            continue
        total += sum(os.lstat(os.path.join(root, f)).st_size for f in files)
    return total


def package_size(python: str, module: str) -> int:
    code = f"import importlib.util, os; s = importlib.util.find_spec({module!r}); print(os.path.dirname(s.origin))"
    try:
        root = subprocess.check_output([python, "-c", code], text=True, stderr=subprocess.DEVNULL).strip()
    except subprocess.CalledProcessError:
        return 0
    site = Path(root).parent  # the package and its siblings: tensorrt_rtx_libs, _bindings, av.libs, ...
    libs = [str(site / n) for n in os.listdir(site) if n.startswith(Path(root).name) and not n.endswith(".dist-info")]
    return sum(os.lstat(os.path.join(r, f)).st_size for d in libs for r, _, fs in os.walk(d) for f in fs)


def timed(python: str, path: str | None, argv: list[str]) -> tuple[float, float, int]:
    """(wall s, peak RSS MB, exit code) of `python -m emodistill.app.cli ARGV` (GNU time's maximum resident size)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if path:
        env["PYTHONPATH"] = path
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", t.name, python, "-m", "emodistill.app.cli", *argv],
                           env=env, capture_output=True, text=True)
        wall, kb = Path(t.name).read_text().split()[-2:]
    return float(wall), int(kb) / 1024, p.returncode


def median_run(python, path, argv, repeats):
    runs = [timed(python, path, argv) for _ in range(repeats)]
    assert all(r[2] == 0 for r in runs), runs
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def probs(python, path, model, data, out) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"PYTHONPATH": path} if path else {})}
    subprocess.run([python, "-c", PROBS, model, data, out], env=env, check=True, capture_output=True, text=True)
    return json.loads(Path(out).read_text())


def windows(timeline: Path) -> list[dict]:
    rows = json.loads(timeline.read_text())["windows"]
    return [{k: v for k, v in r.items() if k not in ("timing_ms",)} for r in rows]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--before-python", required=True)
    ap.add_argument("--before-path", help="PYTHONPATH of the before code (an installed wheel's --target folder)")
    ap.add_argument("--after-python", required=True)
    ap.add_argument("--data", required=True, help="the demo's RAVDESS-format set (its test split is compared)")
    ap.add_argument("--model", action="append", required=True, help="ONNX artifacts (with sidecars)")
    ap.add_argument("--long-video", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    mb = 2**-20
    full, light = site_size(a.before_python) * mb, site_size(a.after_python) * mb
    trt = package_size(a.before_python, "tensorrt_rtx") * mb
    rows.append(("install (site-packages)", f"{full:.0f} MB (full stack)",
                 f"{light:.0f} MB runtime; {light + trt:.0f} MB with TensorRT for RTX (+{trt:.0f} MB)"))
    clip = None
    from_scan = subprocess.check_output([a.after_python, "-c", "import sys; from emodistill.core.data.names import "
                                         "labelled_clips; print(labelled_clips(sys.argv[1], 'ravdess').clips[0]"
                                         ".video_path)", a.data], text=True).strip()
    clip = from_scan
    for model in a.model:
        name = Path(model).parent.name
        bw, br = median_run(a.before_python, a.before_path, ["predict", clip, "--model", model, "--json"], a.repeats)
        aw, ar = median_run(a.after_python, None, ["predict", clip, "--model", model, "--json"], a.repeats)
        rows.append((f"predict one clip, {name}: wall / peak RSS", f"{bw:.2f} s / {br:.0f} MB", f"{aw:.2f} s / {ar:.0f} MB"))
        before = probs(a.before_python, a.before_path, model, a.data, str(out / f"{name}.before.json"))
        after = probs(a.after_python, None, model, a.data, str(out / f"{name}.after.json"))
        diff = max(abs(before[c][k] - after[c][k]) for c in before for k in before[c])
        same = before.keys() == after.keys()
        rows.append((f"same answers, {name}", f"{len(before)} test clips", f"max |p_after - p_before| {diff:.2e}"
                     + ("" if same else " (CLIP SETS DIFFER)")))
    model = a.model[0]
    sb = timed(a.before_python, a.before_path, ["predict", a.long_video, "--model", model, "--stream",
                                                "--out", str(out / "stream-before")])
    sa = timed(a.after_python, None, ["predict", a.long_video, "--model", model, "--stream",
                                      "--out", str(out / "stream-after")])
    rows.append(("--stream over the long video: wall / peak RSS", f"{sb[0]:.1f} s / {sb[1]:.0f} MB",
                 f"{sa[0]:.1f} s / {sa[1]:.0f} MB"))
    wb, wa = windows(out / "stream-before" / "timeline.json"), windows(out / "stream-after" / "timeline.json")
    rows.append(("stream timeline", f"{len(wb)} windows", "identical" if wb == wa else "DIFFERENT"))
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"{'':<{width}}{'before':<34}after"] + [f"{r[0]:<{width}}{r[1]:<34}{r[2]}" for r in rows]
    print("\n".join(lines))
    (out / "runtime_bench.md").write_text("| what | before | after |\n|---|---|---|\n"
                                          + "".join(f"| {r[0]} | {r[1]} | {r[2]} |\n" for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
