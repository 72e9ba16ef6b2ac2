"""Equivariant sequence-to-sequence models (one group acting on encoder ids, decoder ids and outputs together)."""

from ..base import register_with_auto_classes
from .configuration import EquivariantSeq2SeqLMConfig
from .modeling import EncoderInput, EquivariantModelForSeq2SeqLM

register_with_auto_classes(EquivariantSeq2SeqLMConfig, EquivariantModelForSeq2SeqLM)

__all__ = ["EquivariantSeq2SeqLMConfig", "EquivariantModelForSeq2SeqLM", "EncoderInput"]
