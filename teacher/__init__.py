"""The teacher: pretrained SigLIP2 vision + Parakeet audio + the first k layers of LFM2-700M as fusion."""

from .model import (TEACHER_CONFIGS, TEACHERS, TeacherConfig, TeacherModel, build_teacher, create_teacher,
                    list_teachers, model_from_config, register_teacher)
from .weights import MissingWeightsError

__all__ = ["TEACHERS", "TEACHER_CONFIGS", "TeacherConfig", "TeacherModel", "build_teacher", "create_teacher",
           "list_teachers", "model_from_config", "register_teacher", "MissingWeightsError"]
