"""Handwritten digits (scikit-learn's bundled 1797 grey 8x8 images, 10 classes): one split procedure for every
experiment, and the multi-view examples of design 1 (k images of the same class per example).

The data ship with scikit-learn, so nothing is downloaded. :func:`digit_split_indices` is the only way the project
splits them: a seeded per-class permutation, so splits are stratified and the same on every machine.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
from torch.utils.data import Dataset

from ..actions.registry import input_action

__all__ = ["load_digits_data", "digit_split_indices", "load_digit_splits", "sample_view_tuples",
           "random_rotations", "make_views", "MultiViewDigits"]


@functools.lru_cache(maxsize=1)
def load_digits_data() -> Any:
    """scikit-learn's ``load_digits()`` bunch (read once per process)."""
    from sklearn.datasets import load_digits

    return load_digits()


def digit_split_indices(labels: torch.Tensor, test_fraction: float, val_fraction: float = 0.0,
                        seed: int = 0) -> dict[str, torch.Tensor]:
    """Stratified ``{"train", "validation", "test"}`` indices: per class (in class order), a seeded permutation whose
    first ``round(n * test_fraction)`` images are test, the next ``round(n * val_fraction)`` validation, the rest
    train."""
    if not 0 <= test_fraction < 1 or not 0 <= val_fraction < 1 or test_fraction + val_fraction >= 1:
        raise ValueError(f"fractions must be in [0, 1) and sum below 1, got test={test_fraction}, "
                         f"validation={val_fraction}")
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[torch.Tensor]] = {"train": [], "validation": [], "test": []}
    for c in labels.unique(sorted=True).tolist():
        idx = (labels == c).nonzero().flatten()
        idx = idx[torch.randperm(len(idx), generator=generator)]
        n_test, n_val = round(len(idx) * test_fraction), round(len(idx) * val_fraction)
        parts["test"].append(idx[:n_test])
        parts["validation"].append(idx[n_test:n_test + n_val])
        parts["train"].append(idx[n_test + n_val:])
    return {name: torch.cat(chunks).sort().values for name, chunks in parts.items()}


def load_digit_splits(val_fraction: float = 0.2, test_fraction: float = 0.2,
                      seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train"|"validation"|"test": (images [n, 1, 8, 8] in [0, 1], labels [n])}``, stratified by class."""
    digits = load_digits_data()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    split = digit_split_indices(labels, test_fraction, val_fraction, seed)
    return {name: (images[idx], labels[idx]) for name, idx in split.items()}


def sample_view_tuples(labels: torch.Tensor, k: int, n_tuples: int, generator: torch.Generator) -> torch.Tensor:
    """``[n_tuples, k]`` indices: each row holds ``k`` distinct images of one class (class drawn by frequency)."""
    anchors = torch.randint(len(labels), (n_tuples,), generator=generator)
    tuple_class = labels[anchors]
    rows = torch.empty(n_tuples, k, dtype=torch.long)
    for c in tuple_class.unique().tolist():
        members = (labels == c).nonzero().squeeze(1)
        if len(members) < k:
            raise ValueError(f"class {c} has {len(members)} images, fewer than k={k} views")
        where = (tuple_class == c).nonzero().squeeze(1)
        picks = torch.rand(len(where), len(members), generator=generator).argsort(dim=1)[:, :k]
        rows[where] = members[picks]
    return rows


def random_rotations(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """Independent rot90 elements (0..3) for every view of every example: ``[n, k]``."""
    return torch.randint(4, (n, k), generator=generator)


def make_views(images: torch.Tensor, tuples: torch.Tensor, rotations: torch.Tensor | None = None) -> torch.Tensor:
    """``[n, k, C, H, W]`` views, each rotated by its own element of ``rotations`` (one gather for all)."""
    views = images[tuples]
    if rotations is None:
        return views
    n, k = tuples.shape
    flat = views.reshape(n * k, *views.shape[2:])
    return input_action("rot90").apply(flat, rotations.reshape(-1)).reshape(views.shape)


class MultiViewDigits(Dataset):
    """A fixed set of multi-view examples (for ``Trainer``): items are ``{"pixel_values", "labels"}``."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        k: int,
        n_tuples: int,
        rotate: bool = False,
        seed: int = 0,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        tuples = sample_view_tuples(labels, k, n_tuples, generator)
        rotations = random_rotations(n_tuples, k, generator) if rotate else None
        self.pixel_values = make_views(images, tuples, rotations)
        self.labels = labels[tuples[:, 0]]

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"pixel_values": self.pixel_values[i], "labels": self.labels[i]}
