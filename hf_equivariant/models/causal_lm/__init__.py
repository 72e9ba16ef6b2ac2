"""Equivariant causal language models (word-swap groups on token ids)."""

from ..base import register_with_auto_classes
from .configuration import EquivariantCausalLMConfig
from .modeling import EquivariantModelForCausalLM

register_with_auto_classes(EquivariantCausalLMConfig, EquivariantModelForCausalLM)

__all__ = ["EquivariantCausalLMConfig", "EquivariantModelForCausalLM"]
