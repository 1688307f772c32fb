"""Distillation engine: a loss registry, a generic Distiller, a teacher-output cache and the training loop.

    from emodistill.distill import Distiller, LossTerm, create_loss
    d = Distiller(student, teacher, [("ce", 1.0, create_loss("ce")), ("kd", 1.0, create_loss("kd"))])
    out = d(batch, step)          # {"loss", "ce", "kd", "logits"}

The full recipe runs with `emodistill distill --config configs/distill/demo.yaml` (distill/run.py).
"""

from .cache import CacheMiss, TeacherCache, WithTeacherOutputs, fill_for_epochs, teacher_fingerprint
from .core import Distiller, LossTerm, av_inputs, av_inputs_full, distill_epochs, freeze
from .losses import LOSSES, WeightSchedule, create_loss, dkd_loss, kd_loss, register_loss, rkd_loss

__all__ = ["Distiller", "LossTerm", "av_inputs", "av_inputs_full", "distill_epochs", "freeze",
           "LOSSES", "register_loss", "create_loss", "WeightSchedule", "kd_loss", "dkd_loss", "rkd_loss",
           "TeacherCache", "WithTeacherOutputs", "CacheMiss", "teacher_fingerprint", "fill_for_epochs"]
