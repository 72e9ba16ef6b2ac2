"""The offline demo's embedded model: a tiny GPT-2 trained on a generated corpus with planted occupation bias.

Why: the demo must run on a fresh clone with no network, so the package ships its own small, deliberately biased
causal LM (``checkpoint/``) together with the code that generates its corpus and retrains it.

>>> from hf_equivariant.demo import load_demo_model, DEMO_PROMPTS
>>> model, tokenizer = load_demo_model()
"""

from __future__ import annotations

from .corpus import DEMO_PROMPTS, OCCUPATIONS, PLANTED_WEIGHTS, generate_corpus, planted_distribution
from .model import (
    CHECKPOINT_DIR,
    demo_checkpoint_dir,
    load_demo_model,
    occupation_distribution,
    occupation_token_ids,
    total_variation,
)

__all__ = [
    "DEMO_PROMPTS",
    "OCCUPATIONS",
    "PLANTED_WEIGHTS",
    "CHECKPOINT_DIR",
    "generate_corpus",
    "planted_distribution",
    "demo_checkpoint_dir",
    "load_demo_model",
    "occupation_distribution",
    "occupation_token_ids",
    "total_variation",
]
