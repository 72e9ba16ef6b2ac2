"""hf_equivariant: exact, efficient group equivariance for Hugging Face models (multi-group equitune).

Importing the package registers every wrapper with the transformers Auto classes. The package face is lazy: a
name such as ``hf_equivariant.EquivariantModelForCausalLM`` imports its module on first use, and registration
waits until transformers itself is imported (at once if it already is), so ``import hf_equivariant`` and
``hf-equivariant --help`` stay fast. See :mod:`hf_equivariant._registration`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING, Any

from . import _registration
from ._version import __version__

# Public name -> module (relative to this package) that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["Group", "FiniteGroup", "PermutationGroup", "DirectProductGroup", "ProductGroup",
                     "cyclic_group", "direct_product", "group_from_permutations", "trivial_group"], "groups"),
    **dict.fromkeys(["GroupAction", "TrivialAction", "TokenPermutationAction", "WordSwap", "builtin_word_set_names",
                     "load_word_set_file", "ImageGroupAction", "Rot90", "Flip"], "actions"),
    **dict.fromkeys(["STRATEGIES", "Plan", "make_plan"], "plans"),
    **dict.fromkeys(["AGGREGATIONS", "Aggregation"], "aggregation"),
    **dict.fromkeys(["EquivarianceReport", "check_equivariance"], "checks"),
    **dict.fromkeys(["EquivariantCausalLMConfig", "EquivariantModelForCausalLM"], "models.causal_lm"),
    **dict.fromkeys(["EquivariantCLIPConfig", "EquivariantCLIPModel", "EquivariantSiglipConfig",
                     "EquivariantSiglipModel", "EquivariantOpenCLIP", "InvariantZeroShotClassifier"], "models.clip"),
    **dict.fromkeys(["MultiInputEquivariantConfig", "MultiInputEquivariantModel", "EquivariantBranch",
                     "InvariantSymmetricLayer", "MultiInputLayer", "LinearISLayer"], "models.multi_input"),
    **dict.fromkeys(["EquivariantSequenceClassificationConfig", "EquivariantModelForSequenceClassification",
                     "EquivariantSentenceEmbeddingConfig", "EquivariantModelForSentenceEmbedding"],
                    "models.sequence_classification"),
    **dict.fromkeys(["SpanSwap", "SpanSwapAction"], "actions.spans"),
    **dict.fromkeys(["EquivariantSeq2SeqLMConfig", "EquivariantModelForSeq2SeqLM"], "models.seq2seq"),
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name (or a sub-package such as ``hf_equivariant.eval``) on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


_registration.install()

if TYPE_CHECKING:  # static analysers and IDEs see the eager imports
    from .actions import (Flip, GroupAction, ImageGroupAction, Rot90, TokenPermutationAction, TrivialAction,
                          WordSwap, builtin_word_set_names, load_word_set_file)
    from .aggregation import AGGREGATIONS, Aggregation
    from .checks import EquivarianceReport, check_equivariance
    from .groups import (DirectProductGroup, FiniteGroup, Group, PermutationGroup, ProductGroup, cyclic_group,
                         direct_product, group_from_permutations, trivial_group)
    from .models.causal_lm import EquivariantCausalLMConfig, EquivariantModelForCausalLM
    from .models.clip import (EquivariantCLIPConfig, EquivariantCLIPModel, EquivariantOpenCLIP,
                              EquivariantSiglipConfig, EquivariantSiglipModel, InvariantZeroShotClassifier)
    from .models.multi_input import (EquivariantBranch, InvariantSymmetricLayer, LinearISLayer,
                                     MultiInputEquivariantConfig, MultiInputEquivariantModel, MultiInputLayer)
    from .actions.spans import SpanSwap, SpanSwapAction
    from .models.sequence_classification import (EquivariantModelForSentenceEmbedding,
                                                 EquivariantModelForSequenceClassification,
                                                 EquivariantSentenceEmbeddingConfig,
                                                 EquivariantSequenceClassificationConfig)
    from .models.seq2seq import EquivariantModelForSeq2SeqLM, EquivariantSeq2SeqLMConfig
    from .plans import STRATEGIES, Plan, make_plan
