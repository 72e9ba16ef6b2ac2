"""Moved to :mod:`hf_equivariant.testing` (kept for the 0.1.x release line)."""

from ...testing import SPECIAL_TOKENS, tiny_clip_config, tiny_clip_model, tiny_image_processor, word_level_tokenizer  # noqa: F401

__all__ = ["word_level_tokenizer", "tiny_clip_config", "tiny_clip_model", "tiny_image_processor", "SPECIAL_TOKENS"]
