"""The emodistill student: light audio/video branches + our LFM2 fusion, edge-exportable.

    from student import create_student
    model = create_student("student_xs", num_classes=6)
"""

from .model import (STUDENTS, StudentConfig, StudentModel, create_student, list_students, model_from_config,
                    register_student)

__all__ = ["STUDENTS", "StudentConfig", "StudentModel", "create_student", "list_students", "model_from_config",
           "register_student"]
