"""The emodistill student: light audio/video branches + our LFM2 fusion, edge-exportable.

    from emodistill.student import create_student
    model = create_student("student_xs", num_classes=6)

Importing the package registers the "student" family (its presets and `model_from_config`, which
`load_checkpoint` rebuilds student checkpoints with) in emodistill.core.model.
"""

from emodistill.core.model import register_family

from .model import (STUDENTS, StudentConfig, StudentModel, create_student, list_students, model_from_config,
                    register_student)

register_family("student", model_from_config)

__all__ = ["STUDENTS", "StudentConfig", "StudentModel", "create_student", "list_students", "model_from_config",
           "register_student"]
