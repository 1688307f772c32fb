import pytest
import torch

from emodistill.student.fusions import FUSIONS, create_fusion, list_fusions, route

DA, DV, S, DOUT = 12, 20, 4, 16
MODES = ["lfm2", "concat_mlp", "gated", "film", "cross_attention", "transformer_concat", "modality_dropout",
         "shomr", "energy_aware"]
SIMPLE = [m for m in MODES if m != "lfm2"]  # the modes with the `modality_weights="channel"` option
# Parameters that legitimately get no gradient from one training step. Empty: every mode trains all its weights.
NO_GRAD: dict[str, set[str]] = {m: set() for m in MODES}


def make(name: str, **kw):
    if name == "lfm2":
        base = dict(hidden_dim=32, num_layers=3, num_heads=4, num_kv_heads=2, projection_hidden_dim=24,
                    ff_multiple_of=16)
    else:
        base = dict(hidden_dim=32)
    return create_fusion(name, DA, DV, S, DOUT, **{**base, **kw})


def inputs(b: int = 4):
    return torch.randn(b, S, DA), torch.randn(b, S, DV)


def test_registry_has_every_mode():
    assert set(MODES) <= set(list_fusions())
    with pytest.raises(KeyError, match="unknown fusion"):
        create_fusion("nope", DA, DV, S, DOUT)


@pytest.mark.parametrize("name", MODES)
def test_shapes_and_pooled(name):
    out = make(name).eval()(*inputs(3))
    assert out["fused"].shape == (3, S, DOUT) and out["pooled"].shape == (3, DOUT)
    assert torch.allclose(out["pooled"], out["fused"].mean(1), atol=1e-6)
    assert ("aux_loss" in out) == (name == "energy_aware")


@pytest.mark.parametrize("name", MODES)
def test_gradients_reach_every_parameter(name):
    model = make(name, dropout=0.0).train()
    out = model(*inputs(8))
    loss = out["fused"].square().mean() + out.get("aux_loss", 0.0)
    loss.backward()
    missing = {n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0}
    assert missing == NO_GRAD[name]


@pytest.mark.parametrize("name", MODES)
def test_eval_is_deterministic(name):
    model = make(name).eval()
    a, v = inputs()
    with torch.no_grad():
        torch.manual_seed(1)
        first = model(a, v)
        torch.manual_seed(2)  # different RNG state: eval must not draw any noise
        second = model(a, v)
    for k in first:
        assert torch.equal(first[k], second[k]), k


@pytest.mark.parametrize("name", SIMPLE)
def test_channel_modality_weights(name):
    model = make(name, modality_weights="channel", dropout=0.0).eval()
    assert model.audio_scale.shape == model.visual_scale.shape == (32,)
    a, v = inputs()
    with torch.no_grad():
        model.audio_scale.zero_()  # a zero audio weight removes the audio content entirely
        out = model(a, v)["fused"]
        out2 = model(torch.randn_like(a), v)["fused"]
    assert torch.allclose(out, out2, atol=1e-6)
    model.train()
    model(a, v)["fused"].sum().backward()
    assert model.visual_scale.grad is not None and model.visual_scale.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="modality_weights"):
        make(name, modality_weights="scalar")


def test_modality_dropout_is_per_sample_and_never_drops_both():
    model = make("modality_dropout", dropout=0.0, p_audio=0.3, p_visual=0.3)
    b = 64
    a, v = inputs(b)
    model.train()
    with torch.no_grad():
        got = model(a, v)["fused"]
        model.eval()
        pa, pv = model.project(a, v)
        outcomes = {(1, 1): [], (0, 1): [], (1, 0): [], (0, 0): []}
        for ka, kv in outcomes:
            ref = model.finish(*model.fuse(pa * ka, pv * kv))["fused"]
            outcomes[(ka, kv)] = ((got - ref).abs().amax(dim=(1, 2)) < 1e-5).tolist()
    kinds = []
    for i in range(b):
        hit = [k for k, match in outcomes.items() if match[i]]
        assert len(hit) == 1, f"sample {i} matches {hit}"
        kinds.append(hit[0])
    assert (0, 0) not in kinds
    assert kinds.count((1, 1)) not in (0, b)  # some samples dropped, not all-or-nothing across the batch
    assert kinds.count((0, 1)) > 0 and kinds.count((1, 0)) > 0
    with pytest.raises(ValueError, match="p_audio"):
        make("modality_dropout", p_audio=0.7, p_visual=0.5)


def test_transformer_concat_uses_its_modality_embeddings():
    model = make("transformer_concat", dropout=0.0).eval()
    a, v = inputs()
    with torch.no_grad():
        before = model(a, v)["fused"]
        model.modality_embed[0] += torch.randn(32)  # not a constant: LayerNorm would remove a uniform shift
        after = model(a, v)["fused"]
    assert (before - after).abs().max() > 1e-4  # the prototype overwrote this parameter in forward


def test_route_is_soft_or_hard_and_deterministic_at_eval():
    logits = torch.randn(5, 3, 3, requires_grad=True)
    soft = route(logits, hard=False, training=True, tau=1.0)
    assert torch.allclose(soft, logits.softmax(-1))
    hard_eval = route(logits, hard=True, training=False, tau=1.0)
    assert torch.equal(hard_eval.argmax(-1), logits.argmax(-1)) and torch.equal(hard_eval.sum(-1), torch.ones(5, 3))
    hard_train = route(logits, hard=True, training=True, tau=1.0)
    assert set(hard_train.detach().unique().tolist()) <= {0.0, 1.0}
    (hard_train * torch.randn(5, 3, 3)).sum().backward()  # straight-through: the router still learns
    assert logits.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["shomr", "energy_aware"])
def test_hard_routing_picks_one_expert_per_token_at_eval(name):
    model = make(name, dropout=0.0).eval()
    a, v = inputs()
    with torch.no_grad():
        pa, pv = model.project(a, v)
        weights = route(model.router(torch.cat((pa, pv), -1)), True, False, 1.0)
    assert torch.equal(weights.sum(-1), torch.ones(4, S)) and set(weights.unique().tolist()) == {0.0, 1.0}


def test_energy_aware_aux_loss_is_differentiable_and_budgeted():
    a, v = inputs()
    model = make("energy_aware", energy_budget=0.0, energy_weight=1.0).train()
    aux = model(a, v)["aux_loss"]
    assert aux.ndim == 0 and aux.requires_grad and aux > 0
    aux.backward()
    assert model.router.weight.grad.abs().sum() > 0  # the loss can push routing toward cheaper experts
    relaxed = make("energy_aware", energy_budget=1.0)  # every expert costs <= 1: never over budget
    assert relaxed(a, v)["aux_loss"].item() == 0.0


def test_lfm2_registered_factory_passes_options():
    model = make("lfm2", num_layers=2, layer_pattern=["full_attention"])
    assert model.backbone.config.types == ["full_attention", "full_attention"]
    assert "lfm2" in FUSIONS


@pytest.mark.parametrize("name", MODES)
def test_onnx_round_trip(name, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    model = make(name).eval()

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, audio, visual):
            out = self.m(audio, visual)
            return out["fused"], out["pooled"]

    wrap = Wrap(model).eval()
    batch = torch.export.Dim("batch")
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(wrap, inputs(2), str(path), dynamo=True, opset_version=18, verbose=False,
                      dynamic_shapes={"audio": {0: batch}, "visual": {0: batch}})
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert not ops & {"If", "Loop", "RandomUniform", "RandomUniformLike", "RandomNormalLike", "Multinomial"}, ops
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    a, v = inputs(3)  # a batch size different from the export example
    got = sess.run(None, {sess.get_inputs()[0].name: a.numpy(), sess.get_inputs()[1].name: v.numpy()})
    with torch.no_grad():
        ref = wrap(a, v)
    for g, r in zip(got, ref):
        assert g.shape == tuple(r.shape)
        assert (torch.from_numpy(g) - r).abs().max() < 1e-4
