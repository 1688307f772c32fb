"""Issue 25, items 11 and 13: a recipe of another kind given to a recipe command, and the counts and progress
output of `emodistill data check`."""

from __future__ import annotations

import io
import json
import re
import shutil

import pytest

from robustness_corpus import Unchanged, assert_clean_error, cli, cli_subprocess, toy_recipe


# -- item 11: recipes of another kind -------------------------------------------------------------------------

def test_data_prepare_takes_the_data_section_of_a_distill_recipe(dataset, tmp_path, capsys):
    """`data prepare --config configs/distill/demo.yaml` printed the whole recipe and the allowed keys six times;
    the recipe's data: section is what the user means. Overrides set that section (`data.` prefix or not)."""
    cache = tmp_path / "cache"
    with Unchanged(dataset):
        r = cli(capsys, "data", "prepare", "--config", "configs/distill/demo.yaml", "--no-progress",
                "--set", f"root={dataset}", "--set", f"data.cache_dir={cache}", "--set", "workers=0",
                "--set", "preprocess.num_frames=4", "--set", "data.preprocess.image_size=32",
                "--set", "preprocess.clip_seconds=0.5")
    assert r.code == 0, r.err
    assert "4 decoded now" in r.out and f"cache {cache}" in r.out
    assert sorted(cache.rglob("*.safetensors")), "no cache entries written"


def test_data_prepare_on_a_recipe_without_data_section_says_what_it_is(tmp_path, capsys):
    recipe = toy_recipe(tmp_path / "toy.yaml", tmp_path / "run")  # a distill recipe on the toy set: no data:
    r = cli(capsys, "data", "prepare", "--config", recipe, "--no-progress")
    assert_clean_error(r, f"{recipe} is a distillation recipe (emodistill distill --config {recipe})",
                       "emodistill data prepare takes a data recipe or a recipe with a data: section")
    assert "allowed keys" not in r.err


@pytest.mark.parametrize("command, config, what", [
    (["distill"], "configs/data/synth_demo.yaml",
     "is a data recipe (emodistill data prepare --config configs/data/synth_demo.yaml); emodistill distill takes"),
    (["distill"], "configs/teacher/tiny_synth.yaml",
     "is a teacher training recipe (emodistill teacher train --config configs/teacher/tiny_synth.yaml)"),
    (["teacher", "train"], "configs/distill/demo.yaml",
     "is a distillation recipe (emodistill distill --config configs/distill/demo.yaml); emodistill teacher train"),
    (["data", "prepare"], "configs/hardware/h200-sxm.yaml",
     "is a hardware profile or budget (emodistill gpu-check --profile h200-sxm)"),
])
def test_recipe_of_another_kind_is_one_line(command, config, what, capsys):
    r = cli(capsys, *command, "--config", config)
    assert_clean_error(r, config, what)
    assert "allowed keys" not in r.err and "unknown key" not in r.err


def test_unknown_keys_list_the_allowed_keys_once(dataset, tmp_path, capsys):
    """Each unknown key repeated the whole allowed list; a missing key printed the whole section as its input."""
    cfg = tmp_path / "data.yaml"
    cfg.write_text(f"# emodistill data prepare --config {cfg}\nroot: {dataset}\nshuffle: true\nbatch: 4\n"
                   "epochs: 2\n")
    r = cli(capsys, "data", "prepare", "--config", cfg, "--no-progress")
    assert_clean_error(r, "'shuffle', 'batch', 'epochs'")
    assert r.err.count("allowed keys") == 1, r.err
    cfg.write_text(f"# emodistill data prepare --config {cfg}\nformat: ravdess\nsplit: fixed\nseed: 3\n")
    r = cli(capsys, "data", "prepare", "--config", cfg, "--no-progress")
    assert_clean_error(r, "'root': Field required")
    assert "got {" not in r.err and "'seed'" not in r.err, r.err


# -- item 13: data check counts and progress ------------------------------------------------------------------

@pytest.fixture
def two_clips(clips, tmp_path):
    """2 clips by name (one decodes, one is an empty file) and 3 files whose names name no clip."""
    d = tmp_path / "two" / "Actor_01"
    d.mkdir(parents=True)
    shutil.copy(clips["neutral"], d / clips["neutral"].name)
    (d / "01-01-05-01-01-01-01.mp4").write_bytes(b"")
    for name in ("clip.mp4", "a-b.mp4", "01-01-99-01-01-01-01.mp4"):
        shutil.copy(clips["happy"], d / name)
    (d.parent / "notes.txt").write_text("not media")
    return d.parent


def test_check_counts_agree(two_clips, tmp_path):
    """The scanner's log said `2 clips, 3 bad files`, the report `1 usable clips of 2 found, 4 bad files`."""
    out = tmp_path / "report.json"
    r = cli_subprocess("data", "check", "--data", two_clips, "--workers", "0", "--json-out", out)
    assert r.code == 0, r.err
    text = r.out + r.err
    head = "1 usable clips of 2 found, 4 bad files (3 not parsed, 1 not decodable), 0 warnings"
    assert head in r.out.splitlines()[0], r.out
    assert "bad files (skipped): 4" in r.out
    assert set(re.findall(r"(\d+) bad files", text)) == {"4"}, text
    rep = json.loads(out.read_text())
    assert (rep["clips_found"], rep["clips_ok"], rep["files_bad"], rep["bad_parse"], rep["bad_decode"]) == (2, 1, 4, 3, 1)
    assert rep["clips_found"] == rep["clips_ok"] + rep["bad_decode"]
    assert rep["files_bad"] == rep["bad_parse"] + rep["bad_decode"] == len(rep["bad"])


def test_check_progress_off_a_terminal_is_one_line(two_clips):
    """Captured (not a terminal), the bar's redraws piled up on one line: `0/2 ...\\r... 2/2`."""
    r = cli_subprocess("data", "check", "--data", two_clips, "--workers", "0")
    assert r.code == 0, r.err
    assert "\r" not in r.err, repr(r.err)
    bars = [ln for ln in r.err.splitlines() if "check clips" in ln]
    assert len(bars) == 1 and re.fullmatch(r"check clips: 2/2 clips in \d+\.\d s", bars[0]), r.err
    r = cli_subprocess("data", "check", "--data", two_clips, "--workers", "0", "--no-progress")
    assert "check clips" not in r.err, r.err


def test_progress_bar_helper():
    from emodistill.core.data.pool import progress_bar

    f = io.StringIO()  # not a terminal
    bar = progress_bar(3, "decode clips", "clip", True, file=f)
    for _ in range(3):
        bar.update()
    assert f.getvalue() == ""  # nothing while it runs
    bar.close()
    bar.close()
    assert re.fullmatch(r"decode clips: 3/3 clips in \d+\.\d s\n", f.getvalue()), repr(f.getvalue())
    f = io.StringIO()
    bar = progress_bar(3, "decode clips", "clip", False, file=f)
    bar.update()
    bar.close()
    assert f.getvalue() == ""
