"""Equivariant causal language models (word-swap groups on token ids)."""

from transformers import AutoConfig, AutoModelForCausalLM

from .configuration import EquivariantCausalLMConfig
from .modeling import EquivariantModelForCausalLM

AutoConfig.register(EquivariantCausalLMConfig.model_type, EquivariantCausalLMConfig, exist_ok=True)
AutoModelForCausalLM.register(EquivariantCausalLMConfig, EquivariantModelForCausalLM, exist_ok=True)

__all__ = ["EquivariantCausalLMConfig", "EquivariantModelForCausalLM"]
