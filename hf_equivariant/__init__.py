"""hf_equivariant: exact, efficient group equivariance for Hugging Face models (multi-group equitune)."""

__version__ = "0.1.0"

from .groups import FiniteGroup, ProductGroup, cyclic_group, group_from_permutations, trivial_group  # noqa: E402
from .plans import STRATEGIES, Plan, make_plan  # noqa: E402
from .aggregation import AGGREGATIONS  # noqa: E402
from .checks import EquivarianceReport, check_equivariance  # noqa: E402
from .actions.image import Flip, ImageGroupAction, Rot90  # noqa: E402
from .actions.tokens import TokenPermutationAction, WordSwap, builtin_word_set_names  # noqa: E402
from .models.causal_lm import EquivariantCausalLMConfig, EquivariantModelForCausalLM  # noqa: E402
from .multi_input import (  # noqa: E402
    EquivariantBranch,
    InvariantSymmetricLayer,
    LinearISLayer,
    MultiInputEquivariantConfig,
    MultiInputEquivariantModel,
    MultiInputLayer,
)
from .models.clip import (  # noqa: E402
    EquivariantCLIPConfig,
    EquivariantCLIPModel,
    EquivariantSiglipConfig,
    EquivariantSiglipModel,
)
from .open_clip_support import EquivariantOpenCLIP, InvariantZeroShotClassifier  # noqa: E402
