"""Teacher model: pretrained parts load exactly, k layers are the first k, freezing, config round trip."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (Lfm2ForCausalLM, ParakeetFeatureExtractor, ParakeetForCTC, Siglip2ImageProcessor,
                          Siglip2VisionModel, SiglipModel)

import emodistill.teacher.weights as weights
from emodistill.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from emodistill.core.contract import Preprocess
from emodistill.core.layers import interleave
from emodistill.teacher import TeacherModel, list_teachers, model_from_config
from emodistill.teacher.encoders import LogMel


def loaded(small, hf_dirs, **kw):
    return small(vision_source=str(hf_dirs["vision"]), audio_source=str(hf_dirs["audio"]),
                 lfm2_source=str(hf_dirs["lfm2"]), **kw).eval()


def test_registry_and_interface(clip, small):
    assert {"teacher_tiny", "teacher_lfm2_700m"} <= set(list_teachers())
    model = small().eval()
    assert model.family == "teacher" and model.num_classes == 8
    out = model(*clip)
    dims = model.feature_dims()
    assert out["logits"].shape == (2, 8)
    assert out["features"].shape == (2, 4, dims["features"])
    assert out["pooled"].shape == (2, dims["features"])
    assert out["audio_features"].shape == (2, 4, dims["audio_features"])
    assert out["visual_features"].shape == (2, 4, dims["visual_features"])
    torch.testing.assert_close(model.forward_head(model.forward_features(*clip))["logits"], out["logits"])


def test_vision_roundtrip_siglip(hf_dirs, clip, small):
    model = loaded(small, hf_dirs)
    ref = SiglipModel.from_pretrained(hf_dirs["vision"]).vision_model.eval()
    video = clip[0]
    x = F.interpolate(video.flatten(0, 1), size=(32, 32), mode="bilinear", antialias=True)
    with torch.no_grad():
        want = ref(pixel_values=(x - 0.5) / 0.5).pooler_output.view(2, 4, -1)
        _, frames = model.vision(video)
    torch.testing.assert_close(frames, want, rtol=0, atol=1e-6)
    assert not any(k.startswith("text_model") for k in model.load_reports["vision"].read)


def test_vision_roundtrip_siglip2_naflex(hf_dirs, small, vision2_config):
    """NaFlex tower: our in-graph patchify equals Siglip2ImageProcessor + Siglip2VisionModel."""
    model = small(vision=vision2_config, vision_source=str(hf_dirs["vision2"])).eval()
    ref = Siglip2VisionModel.from_pretrained(hf_dirs["vision2"]).eval()
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    inputs = Siglip2ImageProcessor(patch_size=8, max_num_patches=16)(images=[img], return_tensors="pt")
    video = torch.from_numpy(img).permute(2, 0, 1).float().div(255).view(1, 1, 3, 32, 32)
    with torch.no_grad():
        want = ref(**inputs).pooler_output
        _, frames = model.vision(video)
    torch.testing.assert_close(frames[:, 0], want, rtol=0, atol=1e-5)


def test_audio_roundtrip_parakeet_encoder_only(hf_dirs, clip, small):
    """Log-mel in the graph + encoder = ParakeetFeatureExtractor + the CTC checkpoint's encoder; CTC head unread."""
    model = loaded(small, hf_dirs)
    ref = ParakeetForCTC.from_pretrained(hf_dirs["audio"]).encoder.eval()
    audio = clip[1]
    fe = ParakeetFeatureExtractor(feature_size=64)
    inputs = fe(list(audio.numpy()), sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    with torch.no_grad():
        want = ref(input_features=inputs.input_features, attention_mask=inputs.attention_mask).last_hidden_state
        _, frames = model.audio(audio)
    torch.testing.assert_close(frames, want, rtol=0, atol=1e-4)
    read = model.load_reports["audio"].read
    assert read and all(k.startswith("encoder.") for k in read)


def test_logmel_matches_feature_extractor():
    audio = torch.randn(3, 16000) * 0.2
    fe = ParakeetFeatureExtractor(feature_size=80)
    want = fe(list(audio.numpy()), sampling_rate=16000, return_tensors="pt", return_attention_mask=True)
    mel, mask = LogMel(n_mels=80)(audio)
    torch.testing.assert_close(mel, want.input_features, rtol=0, atol=1e-4)
    assert torch.equal(mask, want.attention_mask.bool())


@pytest.mark.parametrize("k", [1, 2, 3, 5])
def test_first_k_layers_equal_truncated_full_model(hf_dirs, k, small):
    model = loaded(small, hf_dirs, num_layers=k)
    full = Lfm2ForCausalLM.from_pretrained(hf_dirs["lfm2"]).model.eval()
    full.layers = torch.nn.ModuleList(list(full.layers)[:k])  # the reference: truncated by hand
    x = torch.randn(2, 8, 32)
    with torch.no_grad():
        want = full(inputs_embeds=x, use_cache=False).last_hidden_state
        got = model.backbone(inputs_embeds=x, use_cache=False).last_hidden_state
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert len(model.backbone.layers) == k


def test_loading_reads_only_kept_tensors(hf_dirs, monkeypatch, small):
    """Only layers < k and the final norm are read: never the token embedding, never later layers."""
    requested = []
    real_open = weights.safe_open

    class Spy:
        def __init__(self, *a, **kw):
            self.f = real_open(*a, **kw)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def keys(self):
            return self.f.keys()

        def get_tensor(self, key):
            requested.append(key)
            return self.f.get_tensor(key)

    monkeypatch.setattr(weights, "safe_open", Spy)
    model = small(num_layers=2, lfm2_source=str(hf_dirs["lfm2"]))
    assert requested == model.load_reports["lfm2"].read
    assert "model.embed_tokens.weight" not in requested
    layers = {int(k.split(".")[2]) for k in requested if k.startswith("model.layers.")}
    assert layers == {0, 1}
    assert "model.embedding_norm.weight" in requested
    assert not any(isinstance(m, torch.nn.Embedding) for m in model.backbone.modules())
    assert not any(n.startswith("embed_tokens") for n in model.backbone.state_dict())


def test_backbone_gets_the_interleaved_layout(small):
    model = small().eval()
    seen = {}
    model.backbone.register_forward_pre_hook(lambda m, a, kw: seen.update(x=kw["inputs_embeds"]), with_kwargs=True)
    video, audio = torch.rand(1, 4, 3, 32, 32), torch.randn(1, 8000) * 0.1
    with torch.no_grad():
        out = model(video, audio)
        a = model.audio_proj(out["audio_features"]) + model.modality_embed[0]
        v = model.visual_proj(out["visual_features"]) + model.modality_embed[1]
    torch.testing.assert_close(seen["x"], interleave(a, v))
    torch.testing.assert_close(seen["x"][:, 1::2], v)


def test_modality_mask_replaces_features_by_missing_embedding(clip, small):
    model = small().eval()
    with torch.no_grad():
        model.missing["audio"].fill_(0.25)
        mask = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
        out, full = model(*clip, modality_mask=mask), model(*clip)
    assert torch.all(out["audio_features"][0] == 0.25)
    torch.testing.assert_close(out["logits"][1], full["logits"][1])
    assert not torch.allclose(out["logits"][0], full["logits"][0])


@pytest.mark.parametrize("flag,part", [("freeze_vision", "vision"), ("freeze_audio", "audio"),
                                       ("freeze_backbone", "backbone")])
def test_freeze_flags_freeze_exactly_their_part(flag, part, clip, small):
    model = small(**{flag: True}).train()
    for name, params in model.parts().items():
        assert all(p.requires_grad == (name != part) for p in params), name
    frozen_module = {"vision": model.vision, "audio": model.audio, "backbone": model.backbone}[part]
    assert not frozen_module.training and model.head.training
    model(*clip)["logits"].sum().backward()
    for name, params in model.parts().items():
        grads = [p.grad for p in params if p.numel()]
        assert all(g is None for g in grads) if name == part else any(g is not None for g in grads), name
    frozen_ids = {id(p) for p in model.parts()[part]}
    assert not any(id(p) in frozen_ids for g in model.param_groups(1e-3) for p in g["params"])


def test_param_groups_differential_lr(small):
    model = small()
    scale = {"vision": 0.1, "audio": 0.1, "backbone": 0.01}
    groups = {g["name"]: g for g in model.param_groups(1e-3, 0.05, lr_scale=scale)}
    assert groups["vision"]["lr"] == pytest.approx(1e-4) and groups["audio"]["lr"] == pytest.approx(1e-4)
    assert groups["backbone"]["lr"] == pytest.approx(1e-5) and groups["head"]["lr"] == pytest.approx(1e-3)
    assert groups["head_no_decay"]["weight_decay"] == 0.0
    n = sum(p.numel() for g in groups.values() for p in g["params"])
    assert n == model.count_parameters()["trainable"]
    default = {g["name"]: g["lr"] for g in model.param_groups(1e-3)}  # pretrained parts at 0.1 x lr by default
    assert default["vision"] == default["backbone"] == pytest.approx(1e-4) and default["fusion"] == 1e-3


def test_gradient_checkpointing_same_gradients(clip, small):
    torch.manual_seed(0)
    no_dropout = {"dropout": 0.0, "attention_dropout": 0.0, "activation_dropout": 0.0}
    a = small(dropout=0.0, audio=no_dropout).train()
    b = model_from_config({**a.get_config(), "gradient_checkpointing": True}).train()
    b.load_state_dict(a.state_dict())
    grads = []
    for m in (a, b):
        m(*clip)["logits"].square().sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters() if p.grad is not None]))
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_bfloat16_parts(clip, small):
    model = small(dtype="bfloat16").eval()
    assert model.backbone.dtype == torch.bfloat16 and model.vision.model.dtype == torch.bfloat16
    assert model.head[1].weight.dtype == torch.float32
    out = model(*clip)
    assert out["logits"].dtype == torch.float32 and torch.isfinite(out["logits"]).all()


def test_get_config_roundtrip_offline(hf_dirs, clip, small):
    model = loaded(small, hf_dirs)
    cfg = json.loads(json.dumps(model.get_config()))
    rebuilt = model_from_config(cfg).eval()  # random weights, no loading, no hub
    assert not rebuilt.load_reports
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(*clip)["logits"], model(*clip)["logits"])
    with pytest.raises(ValueError, match="unknown keys"):
        model_from_config({**cfg, "bogus": 1})


def test_checkpoint_roundtrip_and_contract(tmp_path, clip, small):
    model = small().eval()
    pre = Preprocess(num_frames=4, image_size=40, clip_seconds=0.5)
    names = [f"c{i}" for i in range(8)]
    save_checkpoint(tmp_path / "ckpt", model, preprocess=pre, class_names=names)
    back, meta = load_checkpoint(tmp_path / "ckpt", preprocess=pre, class_names=names, family="teacher")
    assert isinstance(back, TeacherModel) and meta["family"] == "teacher"
    with torch.no_grad():
        torch.testing.assert_close(back(*clip)["logits"], model(*clip)["logits"])
    with pytest.raises(CheckpointError, match="preprocess.num_frames"):
        load_checkpoint(tmp_path / "ckpt", preprocess=Preprocess(num_frames=8, image_size=40, clip_seconds=0.5))


def test_unknown_override_is_named(small):
    with pytest.raises(ValueError, match="num_layerz"):
        small(num_layerz=2)
    with pytest.raises(ValueError, match="num_layers=9"):
        small(num_layers=9)


def test_unimodal_heads_and_their_masked_loss(clip, small):
    from emodistill.core.evaluate import unimodal_ce as _unimodal_loss

    model = small(unimodal_heads=True).eval()
    out = model(*clip)
    assert out["audio_logits"].shape == out["visual_logits"].shape == (2, 8)
    label = torch.tensor([1, 2])
    both = _unimodal_loss(out, label, None, 0.0)
    ce_a = F.cross_entropy(out["audio_logits"], label)
    ce_v = F.cross_entropy(out["visual_logits"], label)
    torch.testing.assert_close(both, (ce_a + ce_v) / 2)
    no_video = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # video missing everywhere: its term is 0
    torch.testing.assert_close(_unimodal_loss(out, label, no_video, 0.0), ce_a / 2)
    assert "audio_logits" not in small(unimodal_heads=False)(*clip)
