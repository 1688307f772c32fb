"""Tiny artifacts of the bad-input corpus, built once per session (helpers: robustness_corpus.py)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # robustness_corpus, for the test modules and decode workers
from robustness_corpus import OLD_EXPORT, toy_recipe  # noqa: E402


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    """A few real synthetic clips (H.264 + AAC .mp4), one per role."""
    from emodistill.core.data.synth import clip_specs, make_clip

    d = tmp_path_factory.mktemp("clips")
    specs = clip_specs(3, "small")
    return {"happy": Path(make_clip(str(d), 0, specs[6])), "neutral": Path(make_clip(str(d), 0, specs[0])),
            "a2": Path(make_clip(str(d), 0, specs[16 + 4])), "a3": Path(make_clip(str(d), 0, specs[32 + 9]))}


@pytest.fixture
def dataset(clips, tmp_path) -> Path:
    """A small RAVDESS tree of 3 actors (one clip each) the test may add bad files to."""
    root = tmp_path / "data"
    for c in clips.values():
        dest = root / c.parent.name / c.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(c, dest)
    return root


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A small student checkpoint (random init; 4 frames of 32 px, 0.5 s of audio)."""
    import torch

    from emodistill.core.checkpoint import save_checkpoint
    from emodistill.core.contract import RAVDESS_CLASSES, Preprocess
    from emodistill.student import create_student

    torch.manual_seed(0)
    pre = Preprocess(num_frames=4, image_size=32, clip_seconds=0.5, face_crop="center")
    model = create_student("student_xs", audio_layers=1, temporal_layers=1, temporal_pattern=["conv"],
                           fusion="concat_mlp", cnn_widths=[8, 8, 8, 8], num_segments=4).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "student", model, preprocess=pre,
                           class_names=list(RAVDESS_CLASSES))


@pytest.fixture(scope="session")
def onnx_export(checkpoint, tmp_path_factory) -> Path:
    """`emodistill export --force` of the checkpoint over an older export (OLD_EXPORT): the export folder."""
    from emodistill.app.cli import main

    out = tmp_path_factory.mktemp("export") / "onnx"
    out.mkdir()
    for name, text in OLD_EXPORT.items():
        (out / name).write_text(text)
    rc = main(["export", "--model", str(checkpoint), "--format", "onnx", "--out", str(out), "--force",
               "--runs", "3", "--parity-samples", "2", "--batch-size", "2",
               "--set", "budget.precision=fp32"])
    assert rc in (0, 3), rc  # 3: exported fine, over the budget (a verdict, not an error)
    return out


@pytest.fixture(scope="session")
def toy_run(tmp_path_factory) -> Path:
    """A finished toy distillation (best/, metrics.json, state/): its recipe."""
    from emodistill.app.cli import main

    d = tmp_path_factory.mktemp("toy")
    recipe = toy_recipe(d / "toy.yaml", d / "run")
    assert main(["distill", "--config", str(recipe)]) == 0
    return recipe
