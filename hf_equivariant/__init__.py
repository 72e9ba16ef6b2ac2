"""hf_equivariant: exact, efficient group equivariance for Hugging Face models (multi-group equitune).

Importing the package registers every wrapper with the transformers Auto classes.
"""

from ._version import __version__
from .actions import (
    Flip,
    GroupAction,
    ImageGroupAction,
    Rot90,
    TokenPermutationAction,
    TrivialAction,
    WordSwap,
    builtin_word_set_names,
    load_word_set_file,
)
from .aggregation import AGGREGATIONS, Aggregation
from .checks import EquivarianceReport, check_equivariance
from .groups import (
    DirectProductGroup,
    FiniteGroup,
    Group,
    PermutationGroup,
    ProductGroup,
    cyclic_group,
    direct_product,
    group_from_permutations,
    trivial_group,
)
from .models.causal_lm import EquivariantCausalLMConfig, EquivariantModelForCausalLM
from .models.clip import (
    EquivariantCLIPConfig,
    EquivariantCLIPModel,
    EquivariantOpenCLIP,
    EquivariantSiglipConfig,
    EquivariantSiglipModel,
    InvariantZeroShotClassifier,
)
from .models.multi_input import (
    EquivariantBranch,
    InvariantSymmetricLayer,
    LinearISLayer,
    MultiInputEquivariantConfig,
    MultiInputEquivariantModel,
    MultiInputLayer,
)
from .models.seq2seq import EquivariantModelForSeq2SeqLM, EquivariantSeq2SeqLMConfig
from .plans import STRATEGIES, Plan, make_plan

__all__ = [
    "__version__", "Group", "FiniteGroup", "PermutationGroup", "DirectProductGroup", "ProductGroup", "cyclic_group",
    "direct_product", "group_from_permutations", "trivial_group", "GroupAction", "TrivialAction",
    "TokenPermutationAction", "WordSwap", "builtin_word_set_names", "load_word_set_file", "ImageGroupAction",
    "Rot90", "Flip", "STRATEGIES", "Plan", "make_plan", "AGGREGATIONS", "Aggregation", "EquivarianceReport",
    "check_equivariance", "EquivariantCausalLMConfig", "EquivariantModelForCausalLM", "EquivariantCLIPConfig",
    "EquivariantCLIPModel", "EquivariantSiglipConfig", "EquivariantSiglipModel", "EquivariantOpenCLIP",
    "InvariantZeroShotClassifier", "MultiInputEquivariantConfig", "MultiInputEquivariantModel", "EquivariantBranch",
    "InvariantSymmetricLayer", "MultiInputLayer", "LinearISLayer", "EquivariantSeq2SeqLMConfig",
    "EquivariantModelForSeq2SeqLM",
]
