import pytest
import torch

from emodistill.student.head import ClassifierHead, SegmentPooling, TemporalPooling


def _pool(mode: str, dim: int = 8, segments: int = 4) -> SegmentPooling:
    pool = SegmentPooling(dim, segments, mode, position=False)
    with torch.no_grad():
        pool.segment_embed.zero_()
    return pool


def test_segment_mean_equals_per_segment_mean_and_ignores_padding():
    x = torch.randn(2, 10, 8)  # 10 steps, 4 segments -> 3 per segment, last segment has 1 real step
    out = _pool("mean")(x)
    torch.testing.assert_close(out[:, :3], x[:, :9].reshape(2, 3, 3, 8).mean(2))
    torch.testing.assert_close(out[:, 3], x[:, 9])


def test_segment_max_ignores_padding():
    x = -torch.rand(2, 10, 8) - 1.0  # all negative: a zero pad would win if it were not masked
    out = _pool("max")(x)
    torch.testing.assert_close(out[:, 3], x[:, 9])
    torch.testing.assert_close(out[:, 0], x[:, :3].amax(1))


def test_segment_attention_is_a_convex_combination():
    seg = torch.randn(2, 4, 1, 8)
    x = seg.expand(2, 4, 5, 8).reshape(2, 20, 8)  # constant within each segment
    torch.testing.assert_close(_pool("attention")(x), seg[:, :, 0])


@pytest.mark.parametrize("mode", ["attention", "mean", "max"])
@pytest.mark.parametrize("steps", [3, 8, 75, 76])
def test_segment_pooling_shapes(mode, steps):
    pool = SegmentPooling(16, 8, mode)
    x = torch.randn(2, steps, 16, requires_grad=True)
    out = pool(x)
    assert out.shape == (2, 8, 16)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_segment_position_encoding_orders_steps():
    pool = SegmentPooling(16, 2, "mean", position=True)
    x = torch.zeros(1, 8, 16)
    out = pool(x)
    assert not torch.allclose(out[:, 0] - pool.segment_embed[0], torch.zeros(16))


def test_temporal_pooling_modes():
    x = torch.randn(3, 5, 8)
    torch.testing.assert_close(TemporalPooling(8, "mean")(x), x.mean(1))
    torch.testing.assert_close(TemporalPooling(8, "max")(x), x.amax(1))
    torch.testing.assert_close(TemporalPooling(8, "last")(x), x[:, -1])
    const = torch.randn(3, 1, 8).expand(3, 5, 8)
    torch.testing.assert_close(TemporalPooling(8, "attention")(const), const[:, 0])
    with pytest.raises(ValueError, match="temporal pooling"):
        TemporalPooling(8, "median")


@pytest.mark.parametrize("pool", ["attention", "mean", "max", "last"])
def test_classifier_head(pool):
    head = ClassifierHead(16, 6, hidden=(32, 16), pool=pool, dropout=0.5)
    x = torch.randn(4, 8, 16, requires_grad=True)
    logits = head(x)
    assert logits.shape == (4, 6)
    logits.sum().backward()
    assert x.grad.abs().sum() > 0
    head.eval()
    torch.testing.assert_close(head(x), head(x))  # dropout off in eval
    assert any(isinstance(m, torch.nn.LayerNorm) for m in head.modules())
