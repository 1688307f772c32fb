"""The teacher: pretrained SigLIP2 vision + Parakeet audio + the first k layers of LFM2-700M as fusion.

Importing the package registers the "teacher" family (its presets and `model_from_config`, which
`load_checkpoint` rebuilds teacher checkpoints with) in emodistill.core.model.
"""

from emodistill.core.model import register_family

from .model import (TEACHER_CONFIGS, TEACHERS, TeacherConfig, TeacherModel, build_teacher, create_teacher,
                    list_teachers, model_from_config, register_teacher)
from .weights import MissingWeightsError

register_family("teacher", model_from_config)

__all__ = ["TEACHERS", "TEACHER_CONFIGS", "TeacherConfig", "TeacherModel", "build_teacher", "create_teacher",
           "list_teachers", "model_from_config", "register_teacher", "MissingWeightsError"]
