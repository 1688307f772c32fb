"""The model contract: what every model (teacher, student, toy) gives distill, export and the commands.

A model is an `AVModel` (an nn.Module) in the spirit of timm's `forward_features` / `forward_head` / `forward`.

Inputs (emodistill.core.contract, the same for every model and every exported artifact):
    video          float32 [B, T, 3, H, W], RGB in [0, 1]; the model normalises internally
    audio          float32 [B, N], mono at the preprocess sample rate, zero-padded to N samples
    modality_mask  float [B, 2] or None: column 0 audio, column 1 video; 1 = present, 0 = missing.
                   A missing modality's segment features are replaced by a learned embedding through
                   arithmetic (`emodistill.core.layers.replace_missing`), so the missing input has no
                   influence and the graph has no branches. None = both present.

    forward_features(video, audio, modality_mask=None) -> dict
        features         [B, S, D]   fused segment features (S segments; feature distillation needs a
                                     teacher and a student with the same S)
        pooled           [B, D]      features pooled over the segments
        audio_features   [B, S, Da]  what the fusion sees from the audio branch (a missing modality's: its
        visual_features  [B, S, Dv]  learned embedding)
        aux_loss         scalar      optional: a regulariser the training loss adds (routed fusions)
    forward_head(features) -> dict
        logits           [B, C]      the classifier; `self.head` applied to `features[self.head_input]`
        audio_logits     [B, C]      only with unimodal heads (`self.unimodal`): linear heads on the mean
        visual_logits    [B, C]      audio / visual features, a training signal per branch; not in exports
    forward(video, audio, modality_mask=None) -> dict
        {logits, **forward_features(...), audio_logits?, visual_logits?} (in this key order); exports keep
        only `logits`.

Attributes and methods:
    family                 "student" | "teacher": the checkpoint family (checkpoint.json "family")
    num_classes            C
    feature_dims()         {"features": D, "audio_features": Da, "visual_features": Dv}: the last dimension of
                           those forward_features outputs (the feature-distillation projectors are sized by it)
    get_config()           JSON-able dict; the family's `model_from_config(get_config())` rebuilds the model
                           (architecture, random weights; load_checkpoint then loads the weights)
    parts()                {part: [parameters]}: every parameter in exactly one named part
    count_parameters()     {part: n, ..., "total": n, "trainable": n}
    param_groups(lr, weight_decay=0.05, lr_scale=None)
                           AdamW groups per part at lr * lr_scale[part] (default `default_lr_scale`), no weight
                           decay on 1-D tensors (biases, norms), frozen parameters left out; each group has a `name`
    set_grad_checkpointing(enable=True)
                           recompute activations of the expensive layers in backward (no-op by default)

Registries. A family registers (1) its presets into `model_registry(family)` and (2) the function that
rebuilds a model from its `get_config()` with `register_family(family, model_from_config)`, both when its
package is imported (`import emodistill.student`, `import emodistill.teacher`). `create_model(name, **kw)` creates any registered
preset, `list_models(family=, role=)` lists them. `load_checkpoint` rebuilds a checkpoint through its family's
`model_from_config`, so whoever loads checkpoints imports the family packages first (an unregistered family is
a CheckpointError naming it). Preset tags: `role` (the side of distillation the preset plays; default its
family) and `input_sized` (the preset also takes the clips' `frames` T and `samples` N). The toys of
`distill.toy` are the presets of the `toy` registry: roles student / teacher, input-sized, no checkpoint family
of their own (a toy saves as the family it plays; `load_checkpoint` cannot rebuild it, its weights load into a
model built by name).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Mapping

import torch
from torch import nn

from .errors import UnknownNameError
from .optim import split_decay
from .registry import Registry


class AVModel(nn.Module):
    """Base class of every emodistill model: the shared head, counting, optimiser groups (see the module doc).

    A subclass sets `family`, `num_classes`, `head` (a module: features[head_input] -> logits [B, C]) and
    `unimodal` (None or `unimodal_heads(...)`), and implements `forward_features` and `feature_dims`.
    """

    family: str = ""
    head_input: str = "pooled"                      # the forward_features output `head` takes
    default_lr_scale: Mapping[str, float] = {}      # param_groups' lr multipliers per part when none are given

    def forward_features(self, video: torch.Tensor, audio: torch.Tensor,
                         modality_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def feature_dims(self) -> dict[str, int]:
        raise NotImplementedError

    def forward_head(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """-> logits [B, C] (+ audio_logits, visual_logits [B, C] with unimodal heads)."""
        out = {"logits": self.head(feats[self.head_input])}
        unimodal = getattr(self, "unimodal", None)
        if unimodal is not None:
            out["audio_logits"] = unimodal["audio"](feats["audio_features"].mean(1))
            out["visual_logits"] = unimodal["visual"](feats["visual_features"].mean(1))
        return out

    def forward(self, video: torch.Tensor, audio: torch.Tensor,
                modality_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        feats = self.forward_features(video, audio, modality_mask)
        head = self.forward_head(feats)
        return {"logits": head.pop("logits"), **feats, **head}

    def get_config(self) -> dict:
        return asdict(self.config)

    def parts(self) -> dict[str, list[nn.Parameter]]:
        """Parameters per part; by default one part per child module and per parameter held directly."""
        parts = {name: list(m.parameters()) for name, m in self.named_children()}
        parts.update({name: [p] for name, p in self.named_parameters(recurse=False)})
        return {k: v for k, v in parts.items() if v}

    def count_parameters(self) -> dict[str, int]:
        """Parameters per part, `total` and `trainable`."""
        counts = {k: sum(p.numel() for p in ps) for k, ps in self.parts().items()}
        counts["total"] = sum(p.numel() for p in self.parameters())
        counts["trainable"] = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return counts

    def param_groups(self, lr: float, weight_decay: float = 0.05,
                     lr_scale: Mapping[str, float] | None = None) -> list[dict]:
        """AdamW groups per part at lr * lr_scale[part] (e.g. {"video": 0.1} for a pretrained frame encoder;
        None = `default_lr_scale`); no weight decay on 1-D tensors; frozen parameters left out. Each group
        carries a `name` (the part, `_no_decay` appended for the 1-D group)."""
        parts = self.parts()
        scale = dict(self.default_lr_scale if lr_scale is None else lr_scale)
        unknown = set(scale) - set(parts)
        if unknown:
            raise ValueError(f"lr_scale has unknown part(s) {sorted(unknown)}; parts: {tuple(parts)}")
        groups = []
        for name, params in parts.items():
            for g in split_decay(((name, p) for p in params), lr * scale.get(name, 1.0), weight_decay):
                groups.append({**g, "name": name + ("" if g["weight_decay"] else "_no_decay")})
        return groups

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute activations in backward instead of storing them; models with nothing worth it ignore it."""


def unimodal_heads(audio_dim: int, visual_dim: int, num_classes: int) -> nn.ModuleDict:
    """Linear audio-only / video-only heads (`AVModel.unimodal`): each branch gets its own gradient, so the
    fast-learning modality does not starve the other one. Training adds their losses."""
    return nn.ModuleDict({"audio": nn.Linear(audio_dim, num_classes), "visual": nn.Linear(visual_dim, num_classes)})


# -- registries ---------------------------------------------------------------------------------------------------
_PRESETS: dict[str, Registry] = {}                  # family -> its presets (name -> factory(**kw) -> AVModel)
_FAMILIES = Registry("model family")               # family -> model_from_config(config dict) -> AVModel


def model_registry(family: str) -> Registry:
    """The preset registry of `family` (created on first use): `@model_registry("student").register`."""
    return _PRESETS.setdefault(family, Registry(family))


def _role(family: str, name: str) -> str:
    return _PRESETS[family].tags(name).get("role", family)


def list_models(family: str | None = None, role: str | None = None) -> list[str]:
    """Registered preset names of the imported families, optionally of one family or playing one role."""
    return sorted(n for f, reg in _PRESETS.items() if family in (None, f) for n in reg.names()
                  if role in (None, _role(f, n)))


def model_tags(name: str) -> dict[str, Any]:
    """The preset's registry tags plus its `family` and `role`."""
    for family, reg in _PRESETS.items():
        if name in reg:
            return {**reg.tags(name), "family": family, "role": _role(family, name)}
    raise UnknownNameError(f"unknown model {name!r}; available: {', '.join(list_models()) or 'none'} (a family "
                           "registers its presets when its package is imported: `import emodistill.student`, `import emodistill.teacher`)")


def create_model(name: str, **kwargs: Any) -> AVModel:
    """Any registered preset by name: `create_model("student_xs", num_classes=6)`."""
    return _PRESETS[model_tags(name)["family"]].create(name, **kwargs)


def register_family(family: str, from_config: Callable[[dict], AVModel]) -> None:
    """Register how a checkpoint of `family` is rebuilt: `from_config(checkpoint.json "model")` -> model."""
    _FAMILIES.register(from_config, name=family)


def family_from_config(family: str) -> Callable[[dict], AVModel]:
    """The registered `model_from_config` of `family` (UnknownNameError if its package was not imported)."""
    return _FAMILIES.get(family)


def list_families() -> list[str]:
    return _FAMILIES.names()


__all__ = ["AVModel", "unimodal_heads", "model_registry", "list_models", "model_tags", "create_model",
           "register_family", "family_from_config", "list_families"]
