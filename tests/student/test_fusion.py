import pytest
import torch

from emodistill.student.fusion import LFM2Fusion, LFM2FusionConfig

TINY = dict(audio_dim=12, visual_dim=20, num_segments=4, hidden_dim=32, num_layers=3, dropout=0.0,
            projection_hidden_dim=24, output_dim=16, num_heads=4, num_kv_heads=2, ff_multiple_of=16)


@pytest.mark.parametrize("gated", [True, False])
def test_shapes_pooled_and_from_config(gated):
    cfg = LFM2FusionConfig(**TINY, use_gated_projection=gated)
    model = LFM2Fusion.from_config(cfg.to_dict()).eval()
    out = model(torch.randn(3, 4, 12), torch.randn(3, 4, 20))
    assert out["fused"].shape == (3, 4, 16) and out["pooled"].shape == (3, 16)
    assert torch.allclose(out["pooled"], out["fused"].mean(1))
    assert model.config == cfg and not model.backbone.config.causal
    twin = LFM2Fusion.from_config(cfg)
    assert {k: v.shape for k, v in twin.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


def test_bidirectional_mixing_across_segments_and_modalities():
    model = LFM2Fusion(LFM2FusionConfig(**TINY)).eval()
    a, v = torch.randn(2, 4, 12), torch.randn(2, 4, 20)
    v2 = v.clone()
    v2[:, -1] += 1.0  # only the LAST visual segment changes
    with torch.no_grad():
        first, first2 = model(a, v)["fused"][:, 0], model(a, v2)["fused"][:, 0]
    assert (first - first2).abs().max() > 1e-5  # reaches the first segment: attention is bidirectional


def test_all_parameters_get_gradients():
    model = LFM2Fusion(LFM2FusionConfig(**TINY)).train()
    out = model(torch.randn(2, 4, 12), torch.randn(2, 4, 20))
    out["fused"].square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_gradient_checkpointing_switch():
    model = LFM2Fusion(LFM2FusionConfig(**TINY)).train()
    a, v = torch.randn(2, 4, 12), torch.randn(2, 4, 20)
    model(a, v)["pooled"].sum().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    assert model.backbone.gradient_checkpointing
    model(a, v)["pooled"].sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, ref[n], atol=1e-6), n
