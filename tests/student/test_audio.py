import math

import pytest
import torch
import torchaudio

from emodistill.student.audio import AudioBranch, ConformerBlock, ConformerEncoder, ConvSubsampling, LogMel


def _signal(batch: int, n: int) -> torch.Tensor:
    t = torch.arange(n) / 16000
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.2 * torch.sin(2 * math.pi * 3000 * t)
    return tone + 0.05 * torch.randn(batch, n)


@pytest.mark.parametrize("n_mels,n_fft,win_length,hop",
                         [(64, 400, None, 160), (80, 512, 400, 160), (64, 400, None, 320)])
def test_logmel_matches_torchaudio(n_mels, n_fft, win_length, hop):
    wav = _signal(2, 16000 + 123)
    ours = LogMel(16000, n_fft, win_length, hop, n_mels)(wav)
    ref = torchaudio.transforms.MelSpectrogram(16000, n_fft=n_fft, win_length=win_length, hop_length=hop,
                                               n_mels=n_mels)(wav)
    ref = torch.log(ref + 1e-6).transpose(1, 2)
    assert ours.shape == ref.shape == (2, 1 + wav.shape[1] // hop, n_mels)
    assert (ours - ref).abs().max() < 1e-3


def test_logmel_has_no_stft_and_no_trainable_weights():
    lm = LogMel()
    assert sum(p.numel() for p in lm.parameters()) == 0
    assert not lm.state_dict()  # fixed bases are rebuilt from the config, not stored in checkpoints
    assert lm.num_frames(32000) == lm(torch.zeros(1, 32000)).shape[1]


def test_conv_subsampling_is_x4():
    sub = ConvSubsampling(64, 32)
    for frames in (200, 201, 203):
        assert sub(torch.randn(2, frames, 64)).shape == (2, -(-(-(-frames // 2)) // 2), 32)


def test_conformer_block_shapes_and_gradients():
    blk = ConformerBlock(32, heads=4, ff_mult=2, kernel_size=7, dropout=0.0)
    x = torch.randn(2, 25, 32, requires_grad=True)
    y = blk(x)
    assert y.shape == x.shape
    y.pow(2).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in blk.parameters())


def test_conformer_sees_whole_sequence():
    enc = ConformerEncoder(16, 32, layers=1, heads=4, ff_mult=2, kernel_size=3, dropout=0.0).eval()
    x = torch.randn(1, 40, 16)
    x2 = x.clone()
    x2[:, -4:] += 1.0  # change only the end: attention must carry it to the first step
    with torch.no_grad():
        assert not torch.allclose(enc(x)[:, 0], enc(x2)[:, 0])


def test_conformer_grad_checkpointing_same_gradients():
    enc = ConformerEncoder(16, 32, layers=2, heads=4, ff_mult=2, kernel_size=3, dropout=0.0)
    x = torch.randn(2, 40, 16)
    enc(x).sum().backward()
    ref = [p.grad.clone() for p in enc.parameters()]
    enc.zero_grad()
    enc.grad_checkpointing = True
    enc(x).sum().backward()
    for r, p in zip(ref, enc.parameters()):
        torch.testing.assert_close(p.grad, r)


@pytest.mark.parametrize("pool", ["attention", "mean", "max"])
def test_audio_branch_shapes_and_gradients(pool):
    branch = AudioBranch(dim=32, layers=1, heads=4, ff_mult=2, kernel_size=7, num_segments=8, pool=pool,
                         dropout=0.0, n_mels=64)
    wav = _signal(2, 32000).requires_grad_(True)
    out = branch(wav)
    assert out.shape == (2, 8, 32)
    out.pow(2).mean().backward()
    assert wav.grad is not None and torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    used = [(n, p) for n, p in branch.named_parameters() if n != "missing"]
    assert all(p.grad is not None for _, p in used), [n for n, p in used if p.grad is None]


def test_audio_branch_accepts_other_lengths():
    branch = AudioBranch(dim=32, layers=1, heads=4, ff_mult=2, num_segments=8).eval()
    with torch.no_grad():
        for n in (8000, 48000, 51200):
            assert branch(torch.randn(1, n) * 0.1).shape == (1, 8, 32)
