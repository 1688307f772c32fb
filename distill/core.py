"""The generic distillation step: any teacher and student that return dicts, any list of losses.

`Distiller(student, teacher, terms)` is an nn.Module whose forward(batch, step) runs the student,
gets the teacher's outputs (from `batch["teacher"]` when a cache supplied them, else from the live
teacher under `torch.no_grad`), and sums the weighted loss terms. Only the student and the loss
modules (e.g. feature projectors) are submodules: the teacher is held outside the module tree, so
it is never in the state dict, the optimiser, or a DDP wrapper (`accelerator.prepare(distiller)`
wraps exactly the trainable parts), and it stays frozen in eval mode whatever `.train()` is called.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
from torch import nn

from .losses import WeightSchedule

logger = logging.getLogger(__name__)

InputFn = Callable[[dict], dict]


def av_inputs(batch: dict) -> dict:
    """Model kwargs of the model contract (emodistill.core.model): video [B,T,3,H,W], audio [B,N], optional
    modality_mask [B,2]."""
    kw = {"video": batch["video"], "audio": batch["audio"]}
    if batch.get("modality_mask") is not None:
        kw["modality_mask"] = batch["modality_mask"]
    return kw


def av_inputs_full(batch: dict) -> dict:
    """Like `av_inputs` but never masked: the teacher always sees both modalities."""
    return {"video": batch["video"], "audio": batch["audio"]}


def freeze(model: nn.Module) -> nn.Module:
    """requires_grad False on every parameter and eval mode (dropout off, norms frozen)."""
    model.requires_grad_(False)
    return model.eval()


@dataclass
class LossTerm:
    """One weighted term of the objective: `weight(step) * module(student_out, teacher_out, batch)`."""

    name: str
    module: nn.Module
    weight: WeightSchedule | float = 1.0

    def __post_init__(self):
        if not isinstance(self.weight, WeightSchedule):
            self.weight = WeightSchedule(float(self.weight))

    @property
    def needs_teacher(self) -> bool:
        return bool(getattr(self.module, "needs_teacher", False))


class Distiller(nn.Module):
    """Student + loss terms (+ a frozen teacher held outside the module tree).

    terms: LossTerm objects or (name, weight | WeightSchedule, module) tuples.
    forward(batch, step) -> dict with `loss` (scalar with grad), each weighted component under its
    term name (detached), `aux` when the student returns `aux_loss`, and `logits` (detached [B,C]).
    The teacher may be None: CE-only training, or teacher outputs supplied in `batch["teacher"]`.
    """

    def __init__(self, student: nn.Module, teacher: nn.Module | None = None,
                 terms: Iterable[LossTerm | tuple] = (), student_inputs: InputFn = av_inputs,
                 teacher_inputs: InputFn = av_inputs_full):
        super().__init__()
        terms = [t if isinstance(t, LossTerm) else LossTerm(name=t[0], weight=t[1], module=t[2]) for t in terms]
        if not terms:
            raise ValueError("Distiller needs at least one loss term")
        self.student = student
        self.criteria = nn.ModuleDict({t.name: t.module for t in terms})
        self.weights = {t.name: t.weight for t in terms}
        self.needs = {t.name: t.needs_teacher for t in terms}
        self.student_inputs, self.teacher_inputs = student_inputs, teacher_inputs
        # bypass nn.Module.__setattr__ so the teacher is not registered as a submodule
        object.__setattr__(self, "_teacher", freeze(teacher) if teacher is not None else None)

    @property
    def teacher(self) -> nn.Module | None:
        return self._teacher

    def set_teacher(self, teacher: nn.Module | None) -> None:
        object.__setattr__(self, "_teacher", freeze(teacher) if teacher is not None else None)

    def weights_at(self, step: int) -> dict[str, float]:
        return {name: w(step) for name, w in self.weights.items()}

    @torch.no_grad()
    def teacher_outputs(self, batch: dict) -> dict | None:
        """Cached outputs from `batch["teacher"]`, else the live frozen teacher's outputs, else None."""
        if batch.get("teacher") is not None:
            return batch["teacher"]
        if self._teacher is None:
            return None
        self._teacher.eval()
        return self._teacher(**self.teacher_inputs(batch))

    def forward(self, batch: dict, step: int = 0) -> dict:
        student_out = self.student(**self.student_inputs(batch))
        weights = self.weights_at(step)
        active = [n for n, w in weights.items() if w != 0]
        teacher_out = None
        if any(self.needs[n] for n in active):
            teacher_out = self.teacher_outputs(batch)
            if teacher_out is None:
                raise ValueError(f"loss terms {[n for n in active if self.needs[n]]} need a teacher or cached "
                                 "teacher outputs; none given")
        logits = student_out["logits"]
        total = logits.new_zeros((), dtype=torch.float32)
        out: dict[str, torch.Tensor] = {}
        for name, module in self.criteria.items():
            if name not in active:  # zero weight: skip the work (and the teacher)
                out[name] = logits.new_zeros((), dtype=torch.float32)
                continue
            value = weights[name] * module(student_out, teacher_out, batch)
            out[name] = value.detach()
            total = total + value
        if student_out.get("aux_loss") is not None:
            aux = student_out["aux_loss"].float()
            out["aux"] = aux.detach()
            total = total + aux
        out["loss"] = total
        out["logits"] = logits.detach()
        return out


def distill_epochs(distiller: Distiller, loader, optimizer: torch.optim.Optimizer, epochs: int = 1,
                   scheduler=None, step: int = 0, max_grad_norm: float | None = None) -> int:
    """A minimal single-process loop (for reuse and tests; distill/run.py is the full one). Returns the step."""
    distiller.train()
    params = [p for p in distiller.parameters() if p.requires_grad]
    for _ in range(epochs):
        for batch in loader:
            out = distiller(batch, step=step)
            optimizer.zero_grad(set_to_none=True)
            out["loss"].backward()
            if max_grad_norm:
                torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
    return step


__all__ = ["Distiller", "LossTerm", "av_inputs", "av_inputs_full", "freeze", "distill_epochs"]
