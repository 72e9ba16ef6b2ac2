"""Load the shipped demo model and read its next-token occupation distribution.

Why: the demo and the tests need the same two things: the checkpoint loaded offline (or rebuilt when a source
tree lacks it) and the model's probabilities over :data:`OCCUPATIONS` right after a prompt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from transformers.utils import logging

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
#: Where the checkpoint is trained when the package copy is missing.
CACHE_DIR = Path(os.environ.get("HF_EQUIVARIANT_CACHE", Path.home() / ".cache" / "hf_equivariant")) / "demo"

_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in _REQUIRED_FILES)


def demo_checkpoint_dir(train_if_missing: bool = True) -> Path:
    """The folder holding the demo checkpoint: the shipped one, else the cache (trained there if needed)."""
    if _complete(CHECKPOINT_DIR):
        return CHECKPOINT_DIR
    if _complete(CACHE_DIR):
        return CACHE_DIR
    if not train_if_missing:
        raise FileNotFoundError(f"no demo checkpoint in {CHECKPOINT_DIR} or {CACHE_DIR}")
    from .train import train_demo_model

    logger.warning("demo checkpoint not found in %s; training it into %s (about two minutes)", CHECKPOINT_DIR, CACHE_DIR)
    train_demo_model(CACHE_DIR)
    return CACHE_DIR


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
        enc = tokenizer.encode(" " + occ, add_special_tokens=False)
        if len(enc) != 1:
            raise ValueError(f"occupation {occ!r} is {len(enc)} tokens in this tokenizer, expected 1")
        ids[occ] = enc[0]
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
