"""Evaluation harnesses (robustness of invariant zero-shot classifiers, ...)."""

from .robustness import (
    CONDITIONS,
    METHODS,
    ImageSet,
    RobustnessReport,
    digits_image_set,
    evaluate_robustness,
    image_folder_set,
)

__all__ = ["CONDITIONS", "METHODS", "ImageSet", "RobustnessReport", "digits_image_set", "evaluate_robustness",
           "image_folder_set"]
