"""Helpers shared by the wrappers' config classes."""

from __future__ import annotations

from typing import Any

from transformers import AutoConfig, PretrainedConfig

__all__ = ["nested_config"]


def nested_config(value: PretrainedConfig | dict[str, Any] | None, field: str) -> PretrainedConfig | None:
    """Rebuild a nested base-model config saved as a dict (it must name its ``model_type``)."""
    if not isinstance(value, dict):
        return value
    data = dict(value)
    model_type = data.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{field} needs a 'model_type' to rebuild the base model's config")
    return AutoConfig.for_model(model_type, **data)
