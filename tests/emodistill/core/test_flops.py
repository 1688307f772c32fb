"""The one FLOP counter: matmul-like ops at 2 per multiply-add, per submodule, CPU attention included."""

import torch
import torch.nn.functional as F
from torch import nn

from emodistill.core.flops import attention_flops, count_flops


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(8, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):  # x [B, L, 8]
        h = self.proj(x).view(x.shape[0], 2, x.shape[1], 8)  # 2 heads of 8
        h = F.scaled_dot_product_attention(h, h, h).reshape(x.shape[0], x.shape[1], 16)
        return self.head(h)


def test_counts_per_module_and_attention():
    model = Net().train()
    b, seq = 3, 5
    f = count_flops(model, torch.randn(b, seq, 8))
    assert model.training  # restored
    assert f["proj"] == 2 * b * seq * 8 * 16 and f["head"] == 2 * b * seq * 16 * 4
    att = attention_flops((b, 2, seq, 8), (b, 2, seq, 8), (b, 2, seq, 8))
    assert att == 2 * b * 2 * seq * seq * (8 + 8)
    assert f["total"] == f["proj"] + f["head"] + att  # the CPU SDPA kernel is counted, not 0
