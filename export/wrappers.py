"""Format-neutral export pieces shared by ONNX, TensorRT, the roofline estimate and the budget verdicts.

`ExportWrapper` is the tensor-only interface every artifact exports: (video, audio[, modality_mask]) -> logits.
`half_model` makes the fp16 copy that fp16/int8 artifacts and estimates start from. `Dims` and `random_inputs`
(the contract's input sizes and deterministic stand-in clips) live in the core (`emodistill.core.inputs`) so
that stages upstream of export use the same ones; they are importable from here too.
"""

from __future__ import annotations

import copy
import re

import torch
from torch import nn

from emodistill.core.inputs import Dims, random_inputs

# class names kept fp32 in fp16 artifacts: LayerNorm/RMSNorm/GroupNorm (fp16 statistics overflow) and the
# log-mel/STFT front end (log of small powers); BatchNorm is not kept: in eval it folds into the conv before it.
KEEP_FP32 = r".*(LayerNorm|RMSNorm|GroupNorm|LogMel|Spectrogram|STFT|Fbank|FrontEnd)"


class ExportWrapper(nn.Module):
    """(video, audio) -> logits: the tensor-only interface every artifact exports.

    video float32 [B, T, 3, H, W], audio float32 [B, N] -> logits float32 [B, C]. With `compute_dtype`
    fp16 the inputs are cast inside, so the artifact keeps the float32 contract.
    """

    def __init__(self, model: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.model = model
        self.compute_dtype = compute_dtype

    def forward(self, video: torch.Tensor, audio: torch.Tensor,
                modality_mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.compute_dtype != torch.float32:
            video, audio = video.to(self.compute_dtype), audio.to(self.compute_dtype)
        if modality_mask is None:
            return self.model(video, audio)["logits"].float()
        return self.model(video, audio, modality_mask=modality_mask)["logits"].float()


def _cast_tree(x, dtype):
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        return x.to(dtype)
    if isinstance(x, (tuple, list)):
        return type(x)(_cast_tree(v, dtype) for v in x)
    if isinstance(x, dict):
        return {k: _cast_tree(v, dtype) for k, v in x.items()}
    return x


def half_model(model: nn.Module, keep_fp32: str = KEEP_FP32) -> tuple[nn.Module, list[str]]:
    """A float16 copy of `model` whose modules with a class name matching `keep_fp32` stay float32.

    Kept modules get their inputs cast to float32 and their outputs cast back to float16 by hooks (traced
    into the graph by the exporter). Returns (model, names of the kept modules).
    """
    m = copy.deepcopy(model).half().eval()
    kept: list[str] = []
    pattern = re.compile(keep_fp32, re.I) if keep_fp32 else None
    for name, mod in m.named_modules():
        if not name or pattern is None or not pattern.fullmatch(type(mod).__name__):
            continue
        if any(name.startswith(k + ".") for k in kept):
            continue
        mod.float()
        mod.register_forward_pre_hook(lambda _m, args, kwargs: (_cast_tree(args, torch.float32),
                                                                 _cast_tree(kwargs, torch.float32)), with_kwargs=True)
        mod.register_forward_hook(lambda _m, _a, out: _cast_tree(out, torch.float16))
        kept.append(name)
    return m, kept


__all__ = ["KEEP_FP32", "Dims", "ExportWrapper", "half_model", "random_inputs"]
