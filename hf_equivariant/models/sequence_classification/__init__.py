"""Text classifiers and sentence encoders made exactly invariant to span swaps (multi-word, multi-token identity
terms): counterfactually fair by construction. See docs/classification.md.

Importing this package registers the wrappers with ``AutoConfig``, ``AutoModelForSequenceClassification`` (the
classifier) and ``AutoModel`` (the sentence encoder).
"""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration import EquivariantSentenceEmbeddingConfig, EquivariantSequenceClassificationConfig
from .embedding import EquivariantModelForSentenceEmbedding, SentenceEmbeddingOutput
from .modeling import EquivariantModelForSequenceClassification, SpanInvariantModel

__all__ = [
    "EquivariantSequenceClassificationConfig", "EquivariantModelForSequenceClassification",
    "EquivariantSentenceEmbeddingConfig", "EquivariantModelForSentenceEmbedding", "SentenceEmbeddingOutput",
    "SpanInvariantModel",
]

AutoConfig.register(EquivariantSequenceClassificationConfig.model_type, EquivariantSequenceClassificationConfig,
                    exist_ok=True)
AutoModelForSequenceClassification.register(EquivariantSequenceClassificationConfig,
                                            EquivariantModelForSequenceClassification, exist_ok=True)
AutoConfig.register(EquivariantSentenceEmbeddingConfig.model_type, EquivariantSentenceEmbeddingConfig, exist_ok=True)
AutoModel.register(EquivariantSentenceEmbeddingConfig, EquivariantModelForSentenceEmbedding, exist_ok=True)
