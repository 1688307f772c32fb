"""Layers shared by teacher and student (emodistill.core.layers)."""

import torch

from emodistill.core.layers import GatedModalityProjection, deinterleave, interleave, replace_missing


def test_interleave_order_and_inverse():
    a = torch.arange(6.0).view(1, 3, 2)
    v = -torch.arange(6.0).view(1, 3, 2) - 1
    x = interleave(a, v)
    assert x.shape == (1, 6, 2)
    assert torch.equal(x[0, 0::2], a[0]) and torch.equal(x[0, 1::2], v[0])
    a2, v2 = deinterleave(x)
    assert torch.equal(a2, a) and torch.equal(v2, v)


def test_gated_projection_formula_and_plain_variant():
    proj = GatedModalityProjection(6, 4, 5, dropout=0.0, gated=True)
    x = torch.randn(2, 3, 6)
    ref = proj.out(torch.sigmoid(proj.gate(x)) * torch.nn.functional.gelu(proj.value(x)))
    assert torch.allclose(proj(x), ref)
    plain = GatedModalityProjection(6, 4, 5, gated=False)
    assert [n for n, _ in plain.named_parameters()] == ["out.weight", "out.bias"]
    assert plain(x).shape == (2, 3, 4)


def test_replace_missing_is_the_embedding_where_absent_and_the_input_where_present():
    x = torch.randn(3, 4, 5)
    e = torch.randn(5)
    out = replace_missing(x, torch.tensor([1.0, 0.0, 1.0]), e)
    assert torch.equal(out[0], x[0]) and torch.equal(out[2], x[2])
    assert torch.equal(out[1], e.expand(4, 5))
    x2 = x.clone()
    x2[1] = 1e3  # a missing modality's input has no influence
    assert torch.equal(replace_missing(x2, torch.tensor([1.0, 0.0, 1.0]), e), out)
