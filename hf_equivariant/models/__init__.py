"""Model wrappers, one folder per family, on the shared base in :mod:`hf_equivariant.models.base`.

Importing any part of this package imports every family, and each family registers itself with the transformers
Auto classes: a script that imports only ``hf_equivariant.models.clip`` still loads a saved causal-LM wrapper
through ``AutoModelForCausalLM``.
"""

from . import causal_lm, clip, multi_input, seq2seq, sequence_classification  # noqa: F401  (registration on import)
