"""`emodistill plan`: the traced step against a measured one, the verdict, the batch search, JSON, errors."""

import argparse
import json

import pytest
import torch
import yaml

from emodistill.app.plan import Planner, plan, register
from emodistill.core.errors import run_guarded
from emodistill.export.profiles import HARDWARE_DIR, load_profile

TARGET = 0.15  # the plan's figure for the step, within 15 % of the measured peak (scripts/plan_bench.py)


pytestmark = pytest.mark.usefixtures("one_thread")


def teacher_recipe(tmp_path, **train) -> str:
    """teacher_tiny at its preset size on 4 frames of 32 px and 0.5 s of audio: a fast step."""
    cfg = {"data": {"root": str(tmp_path / "no-data"), "preprocess": {
               "num_frames": 4, "image_size": 32, "sample_rate": 16000, "clip_seconds": 0.5, "face_crop": "center"}},
           "model": {"name": "teacher_tiny"},
           "train": {"batch_size": 4, "lr": 0.001, "max_grad_norm": 1.0, **train},
           "label_smoothing": 0.1, "unimodal_weight": 1.0, "output_dir": str(tmp_path / "run")}
    path = tmp_path / "teacher.yaml"
    path.write_text(f"# emodistill teacher train --config {path}\n" + yaml.safe_dump(cfg))
    return str(path)


def distill_recipe(tmp_path, cache: bool) -> str:
    cfg = {"toy": {"train": 16, "val": 8, "test": 8}, "teacher": {"name": "toy_teacher"},
           "student": {"name": "toy_student"},
           "distill": {"cache": cache, "losses": {"ce": {}, "kd": {"args": {"temperature": 2.0}},
                                                  "feat": {"loss": "feature", "args": {"key": "features"}}}},
           "train": {"batch_size": 8, "lr": 0.01}, "output_dir": str(tmp_path / "distill")}
    path = tmp_path / f"distill_{cache}.yaml"
    path.write_text(f"# emodistill distill --config {path}\n" + yaml.safe_dump(cfg))
    return str(path)


def profile_yaml(tmp_path, memory_gb: float) -> str:
    data = yaml.safe_load((HARDWARE_DIR / "rtx3050-laptop-4gb.yaml").read_text())
    data["name"] = f"small-{memory_gb}"
    data["gpu"]["memory_gb"] = memory_gb
    path = tmp_path / f"small-{memory_gb}.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = teacher_recipe(tmp_path_factory.mktemp("plan"))
    return path, Planner(path)


def parse(*argv):
    p = argparse.ArgumentParser(prog="emodistill")
    register(p.add_subparsers())
    return p.parse_args(["plan", *argv])


def test_the_plan_of_a_tiny_step_is_within_15_percent_of_the_measured_peak(tiny):
    path, fake = tiny
    predicted = fake.per_gpu(4, None)["step_bytes"]  # this CPU's step: no CUDA context, no allocator margin
    measured = Planner(path, fake=False).measure(4)
    assert abs(predicted / measured - 1) <= TARGET, (predicted, measured)


def test_the_verdict_flips_when_the_gpu_memory_is_lowered(tiny, tmp_path):
    path, planner = tiny
    big = plan(path, "rtx3050-laptop-4gb", planner=planner)
    assert big["fits"] and big["max_batch_per_gpu"] >= 4
    small = plan(path, profile_yaml(tmp_path, 0.36), planner=planner)  # 369 MiB: the CUDA context alone is 364
    assert not small["fits"] and small["max_batch_per_gpu"] == 0
    assert small["peak_bytes_per_gpu"] == big["peak_bytes_per_gpu"] and small["vram_bytes"] < big["vram_bytes"]


def test_the_largest_batch_grows_with_the_memory_and_is_the_edge(tiny, tmp_path):
    path, planner = tiny
    found = []
    for gb in (0.45, 0.6, 1.0):
        result = plan(path, profile_yaml(tmp_path, gb), planner=planner)
        b, vram = result["max_batch_per_gpu"], result["vram_bytes"]
        p = load_profile(profile_yaml(tmp_path, gb))
        assert b >= 1 and planner.per_gpu(b, p)["peak_bytes_per_gpu"] <= vram
        assert planner.per_gpu(b + 1, p)["peak_bytes_per_gpu"] > vram
        found.append(b)
    assert found == sorted(found) and found[0] < found[-1]


def test_json_has_the_documented_keys_and_every_part(tiny, capsys):
    path, _ = tiny
    args = parse("--config", path, "--profile", "rtx3050-desktop-8gb", "--json")
    assert run_guarded(args.func, args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"peak_bytes_per_gpu", "fits", "max_batch_per_gpu", "parts", "profile", "vram_bytes", "gpus", "sharding",
            "batch_per_gpu", "label"} <= set(out)
    assert out["label"] == "estimated" and out["profile"] == "rtx3050-desktop-8gb" and out["gpus"] == 1
    assert out["precision"] == "bf16"  # `auto` on an SM 8.6 GPU
    assert out["peak_bytes_per_gpu"] == sum(out["parts"].values())
    assert out["parts"]["params_trainable"] == 4 * out["parameters"]["trainable"]  # fp32
    assert out["parts"]["optimizer_state"] >= 2 * out["parts"]["params_trainable"]  # AdamW: two fp32 moments
    assert out["parts"]["cuda_context"] == (300 + 64) * 2 ** 20


def test_text_output_says_estimated_and_the_verdict(tiny, capsys):
    path, _ = tiny
    args = parse("--config", path, "--profile", "rtx3050-laptop-4gb", "--batch-size", "2")
    assert run_guarded(args.func, args) == 0
    text = capsys.readouterr().out
    assert "verdict: FITS (estimated)" in text and "total (estimated)" in text and "batch 2 per GPU" in text


def test_sharding_shares_out_the_model_state(tiny):
    _, planner = tiny
    prof = load_profile("h200-sxm")
    one = planner.per_gpu(4, prof, 1, "none")
    ddp = planner.per_gpu(4, prof, 2, "ddp")
    fsdp = planner.per_gpu(4, prof, 8, "fsdp")
    assert ddp["parts"]["ddp_buckets"] == sum(p.nbytes for p in planner.params)
    assert ddp["peak_bytes_per_gpu"] > one["peak_bytes_per_gpu"]
    assert fsdp["parts"]["params_trainable"] < one["parts"]["params_trainable"] / 4
    assert fsdp["parts"]["fsdp_buffers"] > 0


def test_checkpointing_and_frozen_parts_are_what_the_recipe_says(tmp_path):
    full = Planner(teacher_recipe(tmp_path))
    lean = Planner(teacher_recipe(tmp_path), ["model.overrides.freeze_vision=true", "model.overrides.freeze_audio=true",
                                               "model.overrides.gradient_checkpointing=true"])
    f, lp = full.parameters(), lean.parameters()
    assert lp["frozen"] > 0 and lp["trainable"] + lp["frozen"] == f["trainable"]
    a, b = full.per_gpu(8, None)["parts"], lean.per_gpu(8, None)["parts"]
    assert b["optimizer_state"] < a["optimizer_state"] and b["params_frozen"] > 0


def test_a_live_teacher_is_counted_and_a_cached_one_is_not(tmp_path):
    cached = Planner(distill_recipe(tmp_path, cache=True))
    live = Planner(distill_recipe(tmp_path, cache=False))
    assert cached.per_gpu(8, None)["parts"]["live_teacher"] == 0
    parts = live.per_gpu(8, None)["parts"]
    assert parts["live_teacher"] >= sum(p.nbytes for p in live.teacher.parameters())
    assert live.parameters()["live_teacher"] > 0


@pytest.mark.parametrize("argv, message", [
    (["--config", "no-such-recipe.yaml", "--profile", "rtx3050-laptop-4gb"], "config file not found"),
    (["--config", "configs/data/synth_demo.yaml", "--profile", "rtx3050-laptop-4gb"],
     "takes a teacher fine-tuning or distillation recipe"),
    (["--config", "tiny_synth", "--profile", "no-such-gpu"], "hardware profile 'no-such-gpu' not found; available"),
    (["--config", "tiny_synth", "--profile", "rtx3050-laptop-4gb", "--set", "train.no_such_key=1"], "no_such_key"),
    (["--config", "tiny_synth", "--profile", "rtx3050-laptop-4gb", "--set", "model.name=teacher_nope"],
     "unknown teacher 'teacher_nope'"),
])
def test_bad_recipes_and_profiles_are_input_errors(argv, message, capsys):
    args = parse(*argv)
    assert run_guarded(args.func, args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and len(err.strip().splitlines()) == 1


def test_cuda_semantics_apply_inside_only():
    from emodistill.core.memory import cuda_semantics

    x = torch.randn(2, 8, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = torch.nn.Linear(16, 16)(x)
        with cuda_semantics():
            assert torch.nn.functional.layer_norm(y, (16,)).dtype == torch.float32  # CUDA's fp32 list
            assert torch.nn.functional.softmax(y, -1).dtype == torch.float32
            d = torch.nn.functional.dropout(y, 0.1, training=True)
            assert type(d.grad_fn).__name__ == "NativeDropoutBackward0"  # a bool mask, as CUDA's fused kernel
        assert torch.nn.functional.layer_norm(y, (16,)).dtype == torch.bfloat16  # CPU autocast again
