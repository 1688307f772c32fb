import copy

import pytest
import torch
from transformers import Lfm2Config, Lfm2ForCausalLM, Lfm2Model

from emodistill.student.lfm2 import Lfm2Backbone, Lfm2BackboneConfig, Lfm2RMSNorm

# (hidden, heads, kv_heads, intermediate, layer_types, conv_bias, auto_adjust, ffn_multiplier, multiple_of)
CONFIGS = {
    "mixed": (64, 8, 2, 200, ["conv", "conv", "full_attention", "conv", "full_attention"], False, True, 1.0, 16),
    "attn_only_mha": (48, 4, 4, 96, ["full_attention"] * 3, False, False, 1.0, 256),
    "conv_only_bias": (32, 4, 1, 128, ["conv"] * 3, True, True, 0.75, 8),
    "attn_first": (96, 6, 3, 300, ["full_attention", "conv", "conv", "full_attention"], True, True, 1.5, 32),
}


def make_hf(name: str, seed: int = 0, attn: str = "sdpa") -> Lfm2Model:
    hidden, heads, kv, inter, types, bias, adjust, mult, mof = CONFIGS[name]
    cfg = Lfm2Config(vocab_size=16, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=len(types),
                     num_attention_heads=heads, num_key_value_heads=kv, layer_types=types, conv_bias=bias,
                     block_auto_adjust_ff_dim=adjust, block_ffn_dim_multiplier=mult, block_multiple_of=mof,
                     rope_parameters={"rope_type": "default", "rope_theta": 10_000.0 + 1000 * seed})
    cfg._attn_implementation = attn
    torch.manual_seed(seed)
    hf = Lfm2Model(cfg).eval()
    with torch.no_grad():  # norms start at 1 and biases at 0: perturb everything so the weight convention matters
        for p in hf.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return hf


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(CONFIGS))
def test_parity_with_transformers(name, attn):
    hf = make_hf(name, seed=len(name), attn=attn)
    ours = Lfm2Backbone.from_hf(hf).eval()
    x = torch.randn(3, 13, hf.config.hidden_size)
    with torch.no_grad():
        ref = hf(inputs_embeds=x, use_cache=False).last_hidden_state
        out = ours(x)
    diff = (out - ref).abs().max().item()
    print(f"parity {name}/{attn}: max abs diff {diff:.2e}")
    assert diff <= 1e-5


@pytest.mark.parametrize("name,k", [("mixed", 3), ("mixed", 1), ("attn_first", 2)])
def test_num_layers_equals_truncated_hf(name, k):
    hf = make_hf(name, seed=7)
    ours = Lfm2Backbone.from_hf(hf, num_layers=k).eval()
    assert len(ours.layers) == k and ours.config.types == hf.config.layer_types[:k]
    truncated = copy.deepcopy(hf)
    truncated.layers = truncated.layers[:k]  # HF applies embedding_norm after whatever layers it holds
    x = torch.randn(2, 9, hf.config.hidden_size)
    with torch.no_grad():
        ref = truncated(inputs_embeds=x, use_cache=False).last_hidden_state
        full = hf(inputs_embeds=x, use_cache=False).last_hidden_state
        out = ours(x)
    diff = (out - ref).abs().max().item()
    print(f"truncated parity {name} k={k}: max abs diff {diff:.2e}")
    assert diff <= 1e-5
    assert (out - full).abs().max() > 1e-3  # the truncation is real


def test_from_hf_accepts_causal_lm_and_rejects_bad_num_layers():
    hf = make_hf("mixed")
    lm = Lfm2ForCausalLM(hf.config).eval()
    lm.model.load_state_dict(hf.state_dict())
    x = torch.randn(1, 5, hf.config.hidden_size)
    with torch.no_grad():
        ref = hf(inputs_embeds=x, use_cache=False).last_hidden_state
        assert torch.allclose(Lfm2Backbone.from_hf(lm)(x), ref, atol=1e-5)
    for bad in (0, hf.config.num_hidden_layers + 1):
        with pytest.raises(ValueError, match="num_layers"):
            Lfm2Backbone.from_hf(hf, num_layers=bad)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_from_hf_config_matches_parameter_names_and_shapes(name):
    hf = make_hf(name)
    ours = Lfm2Backbone.from_hf_config(hf.config)
    ref = {k: v.shape for k, v in hf.state_dict().items() if not k.startswith("embed_tokens")}
    assert {k: v.shape for k, v in ours.state_dict().items()} == ref
    assert ours.config.ff_dim == hf.layers[0].feed_forward.w1.out_features


def test_layer_pattern_repeats_and_validates():
    cfg = Lfm2BackboneConfig(hidden_size=32, num_layers=5, num_heads=4, num_kv_heads=2,
                             layer_pattern=["conv", "full_attention"])
    assert cfg.types == ["conv", "full_attention", "conv", "full_attention", "conv"]
    with pytest.raises(ValueError, match="layer types"):
        Lfm2BackboneConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, layer_types=["conv", "mamba"])
    with pytest.raises(ValueError, match="num_kv_heads"):
        Lfm2BackboneConfig(hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=3)


@pytest.mark.parametrize("types", [["conv", "conv"], ["full_attention", "full_attention"]])
def test_causal_switch(types):
    cfg = Lfm2BackboneConfig(hidden_size=32, num_layers=2, num_heads=4, num_kv_heads=2, layer_types=types,
                             intermediate_size=64, block_multiple_of=16)
    causal = Lfm2Backbone(cfg).eval()
    bidir = Lfm2Backbone(Lfm2BackboneConfig(**{**cfg.to_dict(), "causal": False})).eval()
    bidir.load_state_dict(causal.state_dict())
    x = torch.randn(2, 8, 32)
    x2 = x.clone()
    x2[:, 5:] += 1.0  # change the future only
    with torch.no_grad():
        assert torch.allclose(causal(x)[:, :5], causal(x2)[:, :5], atol=1e-6)
        assert not torch.allclose(causal(x)[:, 5:], causal(x2)[:, 5:], atol=1e-3)
        if "full_attention" in types:  # conv layers stay causal by design; attention sees the future
            assert not torch.allclose(bidir(x)[:, :5], bidir(x2)[:, :5], atol=1e-3)


def test_rmsnorm_weight_convention_and_fp32_statistics():
    norm = Lfm2RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 8))
    x = torch.randn(4, 8)
    ref = norm.weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
    assert torch.allclose(norm(x), ref, atol=1e-6)
    big = (torch.randn(4, 8) * 1e3).half()  # squares overflow fp16, fp32 statistics must not
    ref = norm(big.float())
    out = norm.half()(big)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    assert torch.allclose(out.float(), ref, rtol=1e-2, atol=1e-2)


def test_gradient_checkpointing_same_output_and_grads():
    cfg = Lfm2BackboneConfig(hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=64,
                             block_multiple_of=16, causal=False)
    model = Lfm2Backbone(cfg).train()
    x = torch.randn(2, 6, 32)
    model(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(x).square().sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, grads[n], atol=1e-6), n


def test_backbone_onnx_round_trip_dynamic_batch_and_length(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    cfg = Lfm2BackboneConfig(hidden_size=32, num_layers=3, num_heads=4, num_kv_heads=2, intermediate_size=64,
                             block_multiple_of=16, causal=True)
    model = Lfm2Backbone(cfg).eval()
    b, t = torch.export.Dim("batch"), torch.export.Dim("seq", min=2, max=512)
    path = tmp_path / "lfm2.onnx"
    torch.onnx.export(model, (torch.randn(2, 6, 32),), str(path), dynamo=True, opset_version=18,
                      dynamic_shapes={"x": {0: b, 1: t}}, verbose=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 11, 32)
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        assert (torch.from_numpy(got) - model(x)).abs().max() < 1e-4
