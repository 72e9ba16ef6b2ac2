"""Moved to :mod:`hf_equivariant.models.clip.open_clip` (this path is kept for the 0.1.x release line)."""

from .models.clip.open_clip import EquivariantOpenCLIP, InvariantZeroShotClassifier, format_prompts  # noqa: F401

__all__ = ["EquivariantOpenCLIP", "InvariantZeroShotClassifier", "format_prompts"]
