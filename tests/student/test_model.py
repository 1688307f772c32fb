import json

import pytest
import torch

from emodistill.core.checkpoint import load_checkpoint, save_checkpoint
from emodistill.core.contract import CREMAD_CLASSES, Preprocess
from emodistill.core.inputs import random_inputs
from emodistill.student import StudentConfig, StudentModel, create_student, list_students, model_from_config
from emodistill.student.cli import preset_dims


@pytest.fixture(scope="module")
def xs():
    torch.manual_seed(0)
    return create_student("student_xs").eval()


def _inputs(model, batch=2):
    torch.manual_seed(1)
    return random_inputs(preset_dims(model), batch)


def test_presets_registered():
    assert {"student_xs", "student_s"} <= set(list_students())
    with pytest.raises(KeyError, match="student_xs"):
        create_student("student_nope")


def test_forward_dict_shapes_xs(xs):
    video, audio = _inputs(xs)
    assert video.shape == (2, 8, 3, 64, 64) and audio.shape == (2, 32000)
    out = xs(video, audio)
    d = xs.feature_dims()
    S = xs.config.num_segments
    assert out["logits"].shape == (2, xs.num_classes)
    assert out["features"].shape == (2, S, d["features"])
    assert out["pooled"].shape == (2, d["features"])
    assert out["audio_features"].shape == (2, S, d["audio_features"])
    assert out["visual_features"].shape == (2, S, d["visual_features"])
    assert xs.family == "student"
    torch.testing.assert_close(xs.forward_head(xs.forward_features(video, audio))["logits"], out["logits"])


def test_forward_dict_shapes_s_batch1():
    model = create_student("student_s").eval()
    video, audio = random_inputs(preset_dims(model), 1)
    assert video.shape == (1, 16, 3, 112, 112) and audio.shape == (1, 51200)
    with torch.no_grad():
        out = model(video, audio)
    d = model.feature_dims()
    assert out["logits"].shape == (1, 8)
    assert out["features"].shape == (1, 8, d["features"])
    assert out["visual_features"].shape == (1, 8, d["visual_features"])
    counts = model.count_parameters()
    assert counts["total"] == sum(counts[p] for p in ("audio", "video", "fusion", "head"))
    assert counts["total"] <= 8_000_000  # the RTX 3050 budget of issue 4


@pytest.mark.parametrize("col,name", [(0, "audio"), (1, "video")])
def test_missing_modality_has_no_influence(xs, col, name):
    video, audio = _inputs(xs)
    mask = torch.ones(2, 2)
    mask[:, col] = 0.0
    with torch.no_grad():
        full = xs(video, audio)["logits"]
        masked = xs(video, audio, modality_mask=mask)
        if name == "audio":
            other = xs(video, torch.randn_like(audio), modality_mask=mask)
        else:
            other = xs(torch.rand_like(video), audio, modality_mask=mask)
    assert not torch.allclose(full, masked["logits"])
    torch.testing.assert_close(masked["logits"], other["logits"], rtol=0, atol=1e-6)
    feats = masked["audio_features" if name == "audio" else "visual_features"]
    branch = xs.audio if name == "audio" else xs.video
    torch.testing.assert_close(feats, branch.missing.expand_as(feats))


def test_mask_is_per_sample(xs):
    video, audio = _inputs(xs)
    mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
    with torch.no_grad():
        full = xs(video, audio)["logits"]
        mixed = xs(video, audio, modality_mask=mask)["logits"]
    torch.testing.assert_close(mixed[1], full[1])
    assert not torch.allclose(mixed[0], full[0])


@pytest.mark.parametrize("mask", [None, [[0.0, 1.0], [1.0, 0.0]]])
def test_every_parameter_gets_a_gradient(mask):
    # DDP (accelerate's default find_unused_parameters=False) needs every parameter in the graph, mask or not
    model = create_student("student_xs")
    video, audio = _inputs(model)
    out = model(video, audio, modality_mask=None if mask is None else torch.tensor(mask))
    sum(out[k].logsumexp(-1).sum() for k in ("logits", "audio_logits", "visual_logits")).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad


def test_config_round_trip_identical_outputs(xs):
    cfg = json.loads(json.dumps(xs.get_config()))
    clone = model_from_config(cfg).eval()
    clone.load_state_dict(xs.state_dict())
    video, audio = _inputs(xs)
    with torch.no_grad():
        for k, v in xs(video, audio).items():
            torch.testing.assert_close(clone(video, audio)[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError, match="unknown option"):
        model_from_config({**cfg, "bogus": 1})


def test_model_from_config_never_downloads():
    cfg = create_student("student_xs").get_config()
    cfg["pretrained"] = True  # a fine-tuned checkpoint of a pretrained-init model: weights come from the file
    assert model_from_config(cfg).config.pretrained is False


def test_checkpoint_round_trip(tmp_path, xs):
    pre = Preprocess(num_frames=8, image_size=64, clip_seconds=2.0)
    save_checkpoint(tmp_path / "ck", xs, preprocess=pre, class_names=[f"c{i}" for i in range(8)])
    model, meta = load_checkpoint(tmp_path / "ck", family="student")
    assert isinstance(model, StudentModel) and meta["model"]["name"] == "student_xs"
    video, audio = _inputs(xs)
    with torch.no_grad():
        torch.testing.assert_close(model(video, audio)["logits"], xs(video, audio)["logits"], rtol=0, atol=0)


def test_overrides_go_into_the_config():
    model = create_student("student_xs", num_classes=len(CREMAD_CLASSES), fusion="gated", head_pool="attention")
    assert model.config.fusion == "gated" and model.num_classes == 6
    video, audio = _inputs(model)
    assert model(video, audio)["logits"].shape == (2, 6)
    with pytest.raises(ValueError, match="unknown option"):
        create_student("student_xs", num_clases=6)


def test_aux_loss_passthrough():
    model = create_student("student_xs", fusion="energy_aware")
    video, audio = _inputs(model)
    out = model(video, audio)
    assert out["aux_loss"].ndim == 0
    assert "aux_loss" not in create_student("student_xs")(video, audio)


def test_param_groups_cover_every_parameter_once():
    model = create_student("student_xs")
    groups = model.param_groups(1e-3, weight_decay=0.05, lr_scale={"video": 0.1})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    lrs = {g["name"]: g["lr"] for g in groups}
    assert lrs["video"] == pytest.approx(1e-4) and lrs["audio"] == pytest.approx(1e-3)
    assert all(g["weight_decay"] == 0.0 for g in groups if g["name"].endswith("_no_decay"))
    torch.optim.AdamW(groups)
    with pytest.raises(ValueError, match="unknown part"):
        model.param_groups(1e-3, lr_scale={"backbone": 0.1})


def test_grad_checkpointing_same_gradients():
    model = create_student("student_xs", dropout=0.0, head_dropout=0.0)
    video, audio = _inputs(model)
    model(video, audio)["logits"].sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(video, audio)["logits"].sum().backward()
    for n, p in model.named_parameters():
        if n in ref:
            torch.testing.assert_close(p.grad, ref[n], msg=n)


def test_config_is_a_dataclass_with_contract_sizes():
    cfg = StudentConfig()
    assert set(cfg.default_preprocess) == {"num_frames", "image_size", "clip_seconds"}
    for name in ("student_xs", "student_s"):
        pre = create_student(name).config.default_preprocess
        Preprocess(**pre)  # valid contract values


def test_unimodal_heads():
    model = create_student("student_xs").eval()
    video, audio = _inputs(model)
    out = model(video, audio)
    assert out["audio_logits"].shape == out["visual_logits"].shape == out["logits"].shape
    # the audio head sees only audio: changing the video leaves it alone
    out2 = model(torch.rand_like(video), audio)
    assert torch.allclose(out["audio_logits"], out2["audio_logits"])
    assert not torch.allclose(out["visual_logits"], out2["visual_logits"])
    plain = create_student("student_xs", unimodal_heads=False)
    assert "audio_logits" not in plain(video, audio)
    assert model.count_parameters()["head"] - plain.count_parameters()["head"] == 2 * (64 * 8 + 8)
