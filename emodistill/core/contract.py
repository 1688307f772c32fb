"""The input contract shared by data, models, checkpoints and exported artifacts.

Models receive `video` float32 [B, T, 3, H, W] RGB in [0, 1] (they normalise internally) and
`audio` float32 [B, N] mono at `sample_rate`, N = round(clip_seconds * sample_rate), zero-padded.
`Preprocess` says how a clip on disk becomes those tensors; it travels in every checkpoint and
export sidecar so `predict` can reproduce training-time preprocessing exactly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .config import BaseConfig

RAVDESS_CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
CREMAD_CLASSES = ["neutral", "happy", "sad", "angry", "fearful", "disgust"]


class Preprocess(BaseConfig):
    """How a clip becomes model input. Part of every cache key, checkpoint and export sidecar."""

    num_frames: int = Field(16, ge=1, description="frames sampled uniformly over the clip (T)")
    image_size: int = Field(112, ge=16, description="square face crop side in pixels (H = W)")
    sample_rate: int = Field(16000, description="audio resampled to this rate, mono")
    clip_seconds: float = Field(3.0, gt=0, description="audio length fed to the model; shorter is zero-padded")
    face_crop: Literal["haar", "center", "box", "none"] = Field(
        "haar", description="haar: OpenCV's bundled frontal-face cascade (center crop when no face); "
        "center: central square; box: the fixed relative box `face_box`; none: resize the whole frame")
    face_box: tuple[float, float, float, float] = Field(
        (0.25, 0.1, 0.75, 0.9), description="relative (x0, y0, x1, y1) for face_crop=box")
    crop_margin: float = Field(1.3, ge=1.0, description="detected face box is enlarged by this factor")

    @property
    def num_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))


def input_contract(pre: Preprocess, class_names: list[str]) -> dict:
    """A self-contained description of what a model or artifact expects and returns."""
    return {
        "video": {"shape": ["batch", pre.num_frames, 3, pre.image_size, pre.image_size], "dtype": "float32",
                  "layout": "B,T,C,H,W", "range": [0.0, 1.0], "color": "RGB",
                  "normalisation": "none outside the model (mean/std applied inside)"},
        "audio": {"shape": ["batch", pre.num_samples], "dtype": "float32", "sample_rate": pre.sample_rate,
                  "channels": 1, "range": [-1.0, 1.0], "padding": "zeros at the end"},
        "outputs": {"logits": ["batch", len(class_names)]},
        "preprocess": pre.model_dump(mode="json"),
        "class_names": list(class_names),
    }
