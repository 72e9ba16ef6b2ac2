"""Invariant zero-shot image classification with CLIP-style models: transformers CLIP/SigLIP and open_clip.

Importing this package registers the transformers wrappers with ``AutoConfig``, ``AutoModel`` and
``AutoModelForZeroShotImageClassification``. See docs/clip.md.
"""

from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification

from .configuration import EquivariantCLIPConfig, EquivariantSiglipConfig
from .modeling import EquivariantCLIPModel, EquivariantSiglipModel, render_clip_model_card
from .open_clip import EquivariantOpenCLIP, InvariantZeroShotClassifier
from .scorer import IMAGE_STRATEGIES, InvariantImageScorer, ScoringSettings, is_sigmoid_model

__all__ = [
    "EquivariantCLIPConfig", "EquivariantCLIPModel", "EquivariantSiglipConfig", "EquivariantSiglipModel",
    "EquivariantOpenCLIP", "InvariantZeroShotClassifier", "InvariantImageScorer", "ScoringSettings",
    "IMAGE_STRATEGIES", "is_sigmoid_model", "render_clip_model_card",
]

for _config, _model in ((EquivariantCLIPConfig, EquivariantCLIPModel),
                        (EquivariantSiglipConfig, EquivariantSiglipModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    AutoModelForZeroShotImageClassification.register(_config, _model, exist_ok=True)
