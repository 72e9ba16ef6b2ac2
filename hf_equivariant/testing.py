"""Tiny, offline models and tokenizers for tests, examples and demos (no downloads).

``word_level_tokenizer`` builds a fast tokenizer over a fixed word list (with ``[BOS] ... [EOS]`` framing, which
CLIP's text pooling needs); ``tiny_clip_config`` a small HF ``CLIPConfig`` (or ``SiglipConfig``) whose text
``eos_token_id`` matches that tokenizer; ``tiny_image_processor`` a ``CLIPImageProcessor`` for its image size.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["word_level_tokenizer", "tiny_clip_config", "tiny_clip_model", "tiny_image_processor",
           "SPECIAL_TOKENS"]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")  # ids 0..3


def word_level_tokenizer(words: Iterable[str]) -> Any:
    """A lower-casing whitespace/punctuation word tokenizer; unknown words map to ``[UNK]``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for word in words:
        word = word.lower()
        if word not in vocab:
            vocab[word] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]", special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="[BOS]", eos_token="[EOS]", pad_token="[PAD]", unk_token="[UNK]",
        model_input_names=["input_ids", "attention_mask"])


def tiny_clip_config(vocab_size: int = 64, image_size: int = 32, patch_size: int = 8, hidden_size: int = 64,
                     layers: int = 2, heads: int = 2, projection_dim: int = 32, max_positions: int = 32,
                     num_channels: int = 3, sigmoid: bool = False) -> Any:
    """A small ``CLIPConfig`` (``SiglipConfig`` when ``sigmoid``) matching :func:`word_level_tokenizer` ids."""
    text = dict(vocab_size=vocab_size, hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=max_positions,
                bos_token_id=2, eos_token_id=3, pad_token_id=0)
    vision = dict(image_size=image_size, patch_size=patch_size, hidden_size=hidden_size, num_channels=num_channels,
                  intermediate_size=2 * hidden_size, num_hidden_layers=layers, num_attention_heads=heads)
    if sigmoid:
        from transformers import SiglipConfig

        text["projection_size"] = hidden_size
        return SiglipConfig(text_config=text, vision_config=vision)
    from transformers import CLIPConfig

    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def tiny_clip_model(seed: int = 0, **config_kwargs: Any) -> Any:
    """A randomly initialised tiny ``CLIPModel`` / ``SiglipModel`` in eval mode (seeded)."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(seed)
    return AutoModel.from_config(tiny_clip_config(**config_kwargs)).eval()


def tiny_image_processor(image_size: int = 32, mean: Any = None, std: Any = None) -> Any:
    """A ``CLIPImageProcessor`` that resizes and centre-crops to ``image_size`` (CLIP's mean/std by default)."""
    from transformers import CLIPImageProcessor

    kwargs: dict[str, Any] = {}
    if mean is not None:
        kwargs["image_mean"] = mean
    if std is not None:
        kwargs["image_std"] = std
    return CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size,
                                                                            "width": image_size}, **kwargs)
