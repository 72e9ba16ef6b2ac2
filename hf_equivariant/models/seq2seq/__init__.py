"""Equivariant sequence-to-sequence models (one group acting on encoder ids, decoder ids and outputs together)."""

from transformers import AutoConfig, AutoModelForSeq2SeqLM

from .configuration import EquivariantSeq2SeqLMConfig
from .modeling import EncoderInput, EquivariantModelForSeq2SeqLM

AutoConfig.register(EquivariantSeq2SeqLMConfig.model_type, EquivariantSeq2SeqLMConfig, exist_ok=True)
AutoModelForSeq2SeqLM.register(EquivariantSeq2SeqLMConfig, EquivariantModelForSeq2SeqLM, exist_ok=True)

__all__ = ["EquivariantSeq2SeqLMConfig", "EquivariantModelForSeq2SeqLM", "EncoderInput"]
