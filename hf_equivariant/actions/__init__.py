"""How groups act on data: token ids (word swaps), images (rot90, flips), nothing (the trivial action)."""

from .base import GroupAction, TrivialAction
from .image import Flip, ImageGroupAction, ImageTransform, Rot90, image_transform_by_name
from .registry import INPUT_GROUPS, image_action, input_action, resolve_word_swaps, token_action
from .tokens import TokenPermutationAction, WordSwap
from .word_sets import builtin_word_set_names, load_word_set_file, word_set_data

__all__ = [
    "GroupAction", "TrivialAction", "TokenPermutationAction", "WordSwap", "ImageGroupAction", "ImageTransform",
    "Rot90", "Flip", "image_transform_by_name", "INPUT_GROUPS", "image_action", "input_action",
    "resolve_word_swaps", "token_action", "builtin_word_set_names", "load_word_set_file", "word_set_data",
]
