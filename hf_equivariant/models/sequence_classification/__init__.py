"""Text classifiers and sentence encoders made exactly invariant to span swaps (multi-word, multi-token identity
terms): counterfactually fair by construction. See docs/classification.md.

Importing this package registers the wrappers with ``AutoConfig``, ``AutoModelForSequenceClassification`` (the
classifier) and ``AutoModel`` (the sentence encoder).
"""

from ..base import register_with_auto_classes
from .configuration import EquivariantSentenceEmbeddingConfig, EquivariantSequenceClassificationConfig
from .embedding import EquivariantModelForSentenceEmbedding, SentenceEmbeddingOutput
from .modeling import EquivariantModelForSequenceClassification, SpanInvariantModel

__all__ = [
    "EquivariantSequenceClassificationConfig", "EquivariantModelForSequenceClassification",
    "EquivariantSentenceEmbeddingConfig", "EquivariantModelForSentenceEmbedding", "SentenceEmbeddingOutput",
    "SpanInvariantModel",
]

register_with_auto_classes(EquivariantSequenceClassificationConfig, EquivariantModelForSequenceClassification)
register_with_auto_classes(EquivariantSentenceEmbeddingConfig, EquivariantModelForSentenceEmbedding)
