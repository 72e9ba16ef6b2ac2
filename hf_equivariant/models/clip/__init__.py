"""Invariant zero-shot image classification with CLIP-style models (HF CLIP, SigLIP); see docs/clip.md.

Importing this package registers the wrappers with ``AutoConfig``, ``AutoModel`` and
``AutoModelForZeroShotImageClassification``.
"""

from transformers import AutoConfig, AutoModel, AutoModelForZeroShotImageClassification

from .configuration import EquivariantCLIPConfig, EquivariantSiglipConfig
from .core import InvariantImageScorer, aggregate_copy_logits
from .modeling import EquivariantCLIPModel, EquivariantSiglipModel, render_clip_model_card

__all__ = [
    "EquivariantCLIPConfig",
    "EquivariantCLIPModel",
    "EquivariantSiglipConfig",
    "EquivariantSiglipModel",
    "InvariantImageScorer",
    "aggregate_copy_logits",
    "render_clip_model_card",
]

for _config, _model in ((EquivariantCLIPConfig, EquivariantCLIPModel),
                        (EquivariantSiglipConfig, EquivariantSiglipModel)):
    AutoConfig.register(_config.model_type, _config, exist_ok=True)
    AutoModel.register(_config, _model, exist_ok=True)
    AutoModelForZeroShotImageClassification.register(_config, _model, exist_ok=True)
