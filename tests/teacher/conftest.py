"""Tiny transformers checkpoints saved with `save_pretrained`, standing in for the real hub weights."""

import pytest
import torch
from transformers import (Lfm2Config, Lfm2ForCausalLM, ParakeetCTCConfig, ParakeetForCTC, Siglip2VisionConfig,
                          Siglip2VisionModel, SiglipConfig, SiglipModel)

VISION = {"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
          "num_attention_heads": 2, "image_size": 32, "patch_size": 8}
VISION2 = {"model_type": "siglip2_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "num_patches": 16, "patch_size": 8}
AUDIO = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
         "subsampling_conv_channels": 8, "num_mel_bins": 64}
LFM2 = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 96, "num_hidden_layers": 5, "num_attention_heads": 4,
        "num_key_value_heads": 2, "full_attn_idxs": [1, 3], "block_multiple_of": 16}
SMALL = {"vision": VISION, "audio": AUDIO, "lfm2": LFM2, "num_layers": 3, "num_segments": 4, "proj_hidden_dim": 32,
         "out_dim": 24, "head_hidden_dim": 16, "vision_pooling": "head"}


def _randomise(model):
    """Give every parameter and buffer non-default values, so a tensor that is not loaded shows up."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1 + (1.0 if p.ndim == 1 else 0.0))
        for name, b in model.named_buffers():
            if "running_var" in name:
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
            elif "running_mean" in name:
                b.copy_(torch.randn(b.shape, generator=g) * 0.1)
    return model.eval()


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """{part: folder} of tiny checkpoints in the layouts of the real ones (SigLIP dual tower, Parakeet CTC,
    Lfm2ForCausalLM sharded), plus a SigLIP2 NaFlex vision tower."""
    root = tmp_path_factory.mktemp("hf")
    text = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 64, "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}
    vis = {k: v for k, v in VISION.items() if k != "model_type"}
    _randomise(SiglipModel(SiglipConfig(vision_config=vis, text_config=text))).save_pretrained(root / "siglip")
    vis2 = {k: v for k, v in VISION2.items() if k != "model_type"}
    _randomise(Siglip2VisionModel(Siglip2VisionConfig(**vis2))).save_pretrained(root / "siglip2")
    _randomise(ParakeetForCTC(ParakeetCTCConfig(encoder_config=AUDIO, vocab_size=16, pad_token_id=15))
               ).save_pretrained(root / "parakeet")
    _randomise(Lfm2ForCausalLM(Lfm2Config(**LFM2))).save_pretrained(root / "lfm2", max_shard_size="40KB")
    return {"vision": root / "siglip", "vision2": root / "siglip2", "audio": root / "parakeet", "lfm2": root / "lfm2"}


@pytest.fixture
def clip():
    """A batch of 2 clips: video [2,4,3,40,40] in [0,1], audio [2,8000] (0.5 s)."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(2, 4, 3, 40, 40, generator=g), torch.randn(2, 8000, generator=g) * 0.1


@pytest.fixture
def small():
    """Factory of a small `teacher_tiny` variant (tiny dims of the fixture checkpoints, S=4, k=3)."""
    from emodistill.teacher import create_teacher

    return lambda **kw: create_teacher("teacher_tiny", **{**SMALL, **kw})


@pytest.fixture
def vision2_config():
    return dict(VISION2)
