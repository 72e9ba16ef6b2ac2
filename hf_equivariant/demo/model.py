"""Load the shipped demo model and read its next-token occupation distribution.

Why: the demo and the tests need the same two things: the checkpoint loaded offline and the model's probabilities
over :data:`OCCUPATIONS` right after a prompt. Loading never trains: a missing checkpoint is an error that says how
to rebuild it (``python -m hf_equivariant.demo.train``), so this module does not depend on the trainer.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers.utils import logging

from ..actions.tokens import single_token_id
from .corpus import OCCUPATIONS

logger = logging.get_logger(__name__)

__all__ = [
    "CHECKPOINT_DIR",
    "CACHE_DIR",
    "demo_checkpoint_dir",
    "load_demo_model",
    "occupation_token_ids",
    "occupation_distribution",
    "total_variation",
]

#: The checkpoint shipped inside the package.
CHECKPOINT_DIR = Path(__file__).resolve().parent / "checkpoint"
#: Where a retrained checkpoint is looked for when the package copy is missing.
CACHE_DIR = Path(os.environ.get("HF_EQUIVARIANT_CACHE", Path.home() / ".cache" / "hf_equivariant")) / "demo"

_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def demo_checkpoint_dir() -> Path:
    """The folder holding the demo checkpoint: the shipped one, else a retrained one in the cache."""
    if _complete(CHECKPOINT_DIR):
        return CHECKPOINT_DIR
    if _complete(CACHE_DIR):
        return CACHE_DIR
    raise FileNotFoundError(f"no demo checkpoint in {CHECKPOINT_DIR} or {CACHE_DIR}; rebuild it with "
                            f"`python -m hf_equivariant.demo.train --output {CACHE_DIR}` (about 30 s on 2 cores)")


def load_demo_model(device: str = "cpu"):
    """``(model, tokenizer)`` of the demo: a tiny GPT-2 with planted occupation bias, loaded offline, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = demo_checkpoint_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    model.to(device).eval()
    return model, tokenizer


def occupation_token_ids(tokenizer, occupations: Sequence[str] = OCCUPATIONS) -> dict[str, int]:
    """Token id of ``" " + occupation`` for each occupation; raises if one is not a single token."""
    ids: dict[str, int] = {}
    for occ in occupations:
        token = single_token_id(tokenizer, " " + occ)
        if token is None:
            raise ValueError(f"occupation {occ!r} is not a single token in this tokenizer")
        ids[occ] = token
    return ids


def occupation_distribution(
    model, tokenizer, prompt: str, occupations: Sequence[str] = OCCUPATIONS, renormalize: bool = True
) -> dict[str, float]:
    """The model's next-token probabilities of each occupation after ``prompt`` (renormalised over occupations)."""
    import torch

    ids = occupation_token_ids(tokenizer, occupations)
    device = next(model.parameters()).device
    enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(device)
    with torch.no_grad():
        logits = model(**enc).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1)
    picked = {occ: float(probs[i]) for occ, i in ids.items()}
    if renormalize:
        total = sum(picked.values())
        picked = {occ: p / total for occ, p in picked.items()}
    return picked


def total_variation(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """Total variation distance between two distributions over the same keys."""
    return 0.5 * sum(abs(p[k] - q.get(k, 0.0)) for k in p)
