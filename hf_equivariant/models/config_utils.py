"""Moved to :mod:`hf_equivariant.models.base` (kept for the 0.1.x release line)."""

from .base import nested_config  # noqa: F401

__all__ = ["nested_config"]
