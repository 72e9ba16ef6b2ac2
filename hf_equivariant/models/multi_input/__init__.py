"""Design 1 of the paper: multi-input networks where each input has its own group, with IS fusion layers.

Importing this package registers :class:`MultiInputEquivariantConfig` / :class:`MultiInputEquivariantModel` with
transformers' ``AutoConfig``, ``AutoModel`` and ``AutoModelForImageClassification``.
"""

from ...actions.base import TrivialAction
from ...actions.registry import input_action as input_group
from ...actions.registry import input_actions as input_groups
from ..base import register_with_auto_classes
from .configuration import INPUT_GROUP_NAMES, MultiInputEquivariantConfig
from .layers import EquivariantBranch, InvariantSymmetricLayer, MultiInputLayer, run_on_orbits, symmetrize
from .linear import LinearISLayer, count_orbits, permutation_table, projection_matrix
from .modeling import (
    BackboneFeatures,
    ConvBlock,
    MultiInputClassifierOutput,
    MultiInputEquivariantModel,
    MultiInputEquivariantPreTrainedModel,
    product_of_inputs,
)

IdentityAction = TrivialAction  # the 0.1.0 name

__all__ = [
    "MultiInputEquivariantConfig", "MultiInputEquivariantModel", "MultiInputEquivariantPreTrainedModel",
    "MultiInputClassifierOutput", "ConvBlock", "BackboneFeatures",
    "EquivariantBranch", "InvariantSymmetricLayer", "MultiInputLayer", "LinearISLayer",
    "IdentityAction", "INPUT_GROUP_NAMES", "input_group", "input_groups", "product_of_inputs",
    "run_on_orbits", "symmetrize", "count_orbits", "permutation_table", "projection_matrix",
]

register_with_auto_classes(MultiInputEquivariantConfig, MultiInputEquivariantModel)
