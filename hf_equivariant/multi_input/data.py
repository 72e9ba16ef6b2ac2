"""Multi-view handwritten digits: k different images of the same class per example (scikit-learn's bundled digits).

The data ship with scikit-learn (1797 grey images of 8x8, 10 classes), so nothing is downloaded. Images are split
once into train / validation / test (stratified), and views are only ever combined inside one split.
"""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from .groups import input_group

__all__ = ["load_digit_splits", "sample_view_tuples", "random_rotations", "make_views", "MultiViewDigits"]


def load_digit_splits(
    val_fraction: float = 0.2, test_fraction: float = 0.2, seed: int = 0
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train"|"validation"|"test": (images [n, 1, 8, 8] in [0, 1], labels [n])}``, stratified by class."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.tensor(digits.target, dtype=torch.long)
    index = torch.arange(len(labels)).numpy()
    rest, test = train_test_split(index, test_size=test_fraction, stratify=labels.numpy(), random_state=seed)
    train, val = train_test_split(
        rest, test_size=val_fraction / (1.0 - test_fraction), stratify=labels[rest].numpy(), random_state=seed
    )
    return {name: (images[idx], labels[idx]) for name, idx in (("train", train), ("validation", val), ("test", test))}


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
    return input_group("rot90").apply(flat, rotations.reshape(-1)).reshape(views.shape)


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
