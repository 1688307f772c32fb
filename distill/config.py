"""The distillation recipe: a typed config loaded from `configs/distill/*.yaml` plus `--set` overrides.

    data / toy   where the clips come from (the data layer's DataConfig, or the toy set of tests)
    teacher      a fine-tuned teacher checkpoint folder (or, for smoke tests, an untrained preset)
    student      the student preset and its overrides
    distill      the loss terms (name -> registered loss, weight schedule, args), the teacher-output
                 cache, `kd: false` for the CE-only baseline, label_fraction for unlabeled transfer sets
    train        optimiser, schedule, epochs, precision, checkpoints, early stopping: the shared
                 `train:` schema of emodistill.core.train (the same keys as teacher recipes)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from emodistill.core.config import BaseConfig
from emodistill.core.data import DataConfig
from emodistill.core.train import TrainConfig

from .toy import ToyDataConfig


def _needs_teacher(loss: str) -> bool:
    from .losses import needs_teacher  # torch-heavy: imported only when a recipe is validated

    try:
        return needs_teacher(loss)
    except KeyError as e:  # a ValueError becomes a validation error that names the key
        raise ValueError(str(e).strip("'\"")) from None


class TeacherSection(BaseConfig):
    checkpoint: str | None = Field(None, description="fine-tuned teacher checkpoint folder (emodistill teacher train)")
    name: str | None = Field(None, description="untrained teacher preset instead of a checkpoint (smoke tests only; "
                             "`toy_teacher` for the toy set)")
    overrides: dict[str, Any] = Field(default_factory=dict, description="preset overrides when `name` is used")


class StudentSection(BaseConfig):
    name: str = Field("student_xs", description="student preset (emodistill student info), or toy_student")
    overrides: dict[str, Any] = Field(default_factory=dict, description="StudentConfig fields to override")


class LossSection(BaseConfig):
    """One term of the objective: weight(step) * loss(student_out, teacher_out, batch)."""

    loss: str | None = Field(None, description="registered loss (ce, kd, dkd, feature, rkd); default: the term's name")
    enabled: bool = Field(True, description="false drops the term")
    weight: float = Field(1.0, description="weight (the final one for ramped schedules)")
    schedule: Literal["constant", "linear", "cosine"] = Field("constant", description="weight schedule over steps")
    warmup_steps: int = Field(0, ge=0, description="ramp length in optimiser steps (linear/cosine)")
    start_weight: float = Field(0.0, description="weight at the start of the ramp")
    start_step: int = Field(0, ge=0, description="step at which the ramp starts")
    args: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of the loss (e.g. temperature)")


def _default_losses() -> dict[str, LossSection]:
    return {"ce": LossSection(args={"label_smoothing": 0.1}),
            "kd": LossSection(args={"temperature": 4.0})}


class DistillSection(BaseConfig):
    kd: bool = Field(True, description="false = CE-only baseline: every teacher term is dropped, no teacher is loaded")
    losses: dict[str, LossSection] = Field(default_factory=_default_losses, description="named loss terms")
    cache: bool = Field(True, description="precompute teacher outputs once (offline distillation) instead of "
                        "running the teacher every step")
    cache_dir: str | None = Field(None, description="teacher-output cache root; default <output_dir>/../teacher_cache")
    cache_topk: int | None = Field(None, ge=1, description="store only the top-k teacher logits (compact cache)")
    teacher_view: Literal["same", "clean"] = Field(
        "same", description="what the teacher sees: the student's augmented view, or the clean clip (one cached "
        "output per clip; the student learns to map every view to the teacher's clean-clip output)")
    label_fraction: float = Field(1.0, ge=0, le=1, description="semi-supervised regime: the fraction of train clips "
                                  "that keep their label (class-stratified, chosen by seed). KD arm: the rest are "
                                  "unlabelled transfer clips (label -1: only the teacher teaches); CE-only arm: "
                                  "trains on the labelled clips alone and never loads the rest")
    baseline_steps: Literal["epochs", "matched"] = Field(
        "epochs", description="CE-only arm with label_fraction < 1: `epochs` = train.epochs passes over its labelled "
        "clips (fewer optimiser steps than the KD arm); `matched` = the labelled clips repeated so each epoch has "
        "as many steps as the KD arm's")


class TrainSection(TrainConfig):
    """The shared `train:` schema (emodistill.core.train.TrainConfig) plus what only distillation has."""

    eval_teacher: bool = Field(True, description="also evaluate the teacher on val and test")

    @model_validator(mode="after")
    def _no_lr_scales(self):
        for key in ("encoder_lr_scale", "backbone_lr_scale"):
            if getattr(self, key) is not None:
                raise ValueError(f"{key} is a teacher fine-tuning knob; distillation trains every student "
                                 "parameter at train.lr")
        return self


class DistillConfig(BaseConfig):
    data: DataConfig | None = Field(None, description="the clips (data layer config)")
    toy: ToyDataConfig | None = Field(None, description="toy data instead of `data` (tests)")
    teacher: TeacherSection = Field(default_factory=TeacherSection)
    student: StudentSection = Field(default_factory=StudentSection)
    distill: DistillSection = Field(default_factory=DistillSection)
    train: TrainSection = Field(default_factory=TrainSection)
    output_dir: str = Field("runs/distill", description="best checkpoint, training state, metrics.json, TensorBoard")
    seed: int = Field(0, description="seed of init, data order, dropout and modality dropout")

    @model_validator(mode="after")
    def _check(self):
        if (self.data is None) == (self.toy is None):
            raise ValueError("give exactly one of `data` (clips) and `toy` (toy set)")
        teacher_terms = self.distill.kd and any(
            s.enabled and _needs_teacher(s.loss or n) for n, s in self.distill.losses.items())
        if teacher_terms and self.teacher.checkpoint is None and self.teacher.name is None:
            raise ValueError("the recipe has teacher loss terms but no `teacher.checkpoint` "
                             "(set one, or use distill.kd=false for the CE-only baseline)")
        return self


__all__ = ["DistillConfig", "TeacherSection", "StudentSection", "LossSection", "DistillSection", "TrainSection"]
