"""Invariant zero-shot image classification with CLIP-style models: transformers CLIP/SigLIP and open_clip.

Importing this package registers the transformers wrappers with ``AutoConfig``, ``AutoModel`` and
``AutoModelForZeroShotImageClassification``. See docs/clip.md.
"""

from ..base import register_with_auto_classes
from .configuration import EquivariantCLIPConfig, EquivariantSiglipConfig
from .modeling import EquivariantCLIPModel, EquivariantSiglipModel, render_clip_model_card
from .open_clip import EquivariantOpenCLIP, InvariantZeroShotClassifier
from .scorer import IMAGE_STRATEGIES, InvariantImageScorer, ScoringSettings, is_sigmoid_model

__all__ = [
    "EquivariantCLIPConfig", "EquivariantCLIPModel", "EquivariantSiglipConfig", "EquivariantSiglipModel",
    "EquivariantOpenCLIP", "InvariantZeroShotClassifier", "InvariantImageScorer", "ScoringSettings",
    "IMAGE_STRATEGIES", "is_sigmoid_model", "render_clip_model_card",
]

register_with_auto_classes(EquivariantCLIPConfig, EquivariantCLIPModel)
register_with_auto_classes(EquivariantSiglipConfig, EquivariantSiglipModel)
