"""Zero-shot robustness to rot90/flips: top-1/top-5 accuracy and images per second of base, full, multi,
canonical and max_prob under no transform, random rot90, random flip and both.

Test-time transforms are drawn per image from a seeded generator (the research code drew one per batch), and the
same draws are used for every method, so the methods see exactly the same images. Transforms act on the
preprocessed ``pixel_values`` (square tensors), where invariance is exact.

Any model with ``zero_shot_logits(pixel_values, class_embeds, strategy, aggregation)`` works:
:class:`hf_equivariant.EquivariantCLIPModel` and :class:`hf_equivariant.EquivariantOpenCLIP`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from ..actions.registry import image_action
from ..datasets.digits import digit_split_indices, load_digits_data
from .distributed import Shards

__all__ = [
    "CONDITIONS", "METHODS", "DEFAULT_METHODS", "DIGIT_NAMES", "DIGIT_TEMPLATES", "ImageSet", "RobustnessReport",
    "random_transform_elements", "evaluate_robustness", "digits_image_set", "image_folder_set", "cifar100_set",
]

CONDITIONS = ("none", "rot90", "flip", "rot90+flip")
# method name -> (strategy, aggregation)
METHODS: dict[str, tuple[str, str]] = {
    "base": ("none", "mean_prob"),
    "full": ("full", "mean_prob"),
    "multi": ("multi", "mean_prob"),
    "canonical": ("canonical", "mean_prob"),
    "max_prob": ("full", "max_prob"),
    "multi_max_prob": ("multi", "max_prob"),
}
DEFAULT_METHODS = ("base", "full", "multi", "canonical", "max_prob")
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
DIGIT_TEMPLATES = ("a photo of the digit {}.", "a handwritten {}.", "the number {}.", "an image of a {}.")

_D4 = image_action(["rot90", "flip"])


def random_transform_elements(condition: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """Element ids (of the rot90 x flip group) for ``n`` images: identity, a random rotation, a random
    left-right flip (or not), or a uniformly random element of the dihedral group."""
    if condition == "none":
        return torch.zeros(n, dtype=torch.long)
    if condition == "rot90":
        return torch.tensor(_D4.factor_elements[0])[torch.randint(4, (n,), generator=generator)]
    if condition == "flip":
        return torch.tensor(_D4.factor_elements[1])[torch.randint(2, (n,), generator=generator)]
    if condition == "rot90+flip":
        return torch.randint(_D4.order, (n,), generator=generator)
    raise ValueError(f"unknown condition {condition!r}; choose from {CONDITIONS}")


@dataclass
class ImageSet:
    """Images with labels and class names; ``preprocess`` turns a list of items into ``pixel_values``.

    ``items`` are anything ``preprocess`` accepts (PIL images, file paths, or rows of a tensor with
    ``preprocess=None``).
    """

    items: Sequence[Any] | torch.Tensor
    labels: torch.Tensor
    classnames: list[str]
    preprocess: Callable[[Sequence[Any]], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def limit(self, n: int | None, seed: int = 0) -> ImageSet:
        """A seeded random subset of ``n`` items (all if ``n`` is None or large enough)."""
        if n is None or n >= len(self):
            return self
        keep = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n].sort().values
        items = self.items[keep] if torch.is_tensor(self.items) else [self.items[int(i)] for i in keep]
        return ImageSet(items, self.labels[keep], self.classnames, self.preprocess)

    def batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for index in range(self.num_batches(batch_size)):
            yield self.batch(index, batch_size)

    def num_batches(self, batch_size: int) -> int:
        return (len(self) + batch_size - 1) // batch_size

    def batch(self, index: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pixel_values, labels)`` of batch ``index``."""
        start = index * batch_size
        chunk = self.items[start:start + batch_size]
        pixels = chunk if self.preprocess is None else self.preprocess(chunk)
        return pixels, self.labels[start:start + batch_size]


@dataclass
class RobustnessReport:
    """One row per (method, condition): accuracy, throughput and encoder images per input image."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def get(self, method: str, condition: str) -> dict[str, Any]:
        for row in self.rows:
            if row["method"] == method and row["condition"] == condition:
                return row
        raise KeyError((method, condition))

    def to_markdown(self) -> str:
        """Top-1 table (methods x conditions), then top-5 and images/s tables."""
        methods = list(dict.fromkeys(r["method"] for r in self.rows))
        conditions = list(dict.fromkeys(r["condition"] for r in self.rows))
        out = []
        for title, key, fmt in (("top-1 accuracy (%)", "top1", "{:.1f}"), ("top-5 accuracy (%)", "top5", "{:.1f}"),
                                ("images per second", "images_per_s", "{:.0f}")):
            out.append(f"**{title}**\n")
            out.append("| method | encodes/image | " + " | ".join(conditions) + " |")
            out.append("|---|---|" + "---|" * len(conditions))
            for m in methods:
                cells = [fmt.format(self.get(m, c)[key] * (100 if key.startswith("top") else 1)) for c in conditions]
                out.append(f"| {m} | {self.get(m, conditions[0])['encodes_per_image']:g} | " + " | ".join(cells) + " |")
            out.append("")
        return "\n".join(out)

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps({"meta": self.meta, "rows": self.rows}, indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text


def evaluate_robustness(
    model: Any,
    class_embeds: torch.Tensor,
    data: ImageSet,
    methods: Sequence[str] = DEFAULT_METHODS,
    conditions: Sequence[str] = CONDITIONS,
    *,
    seed: int = 0,
    batch_size: int = 64,
    topk: Sequence[int] = (1, 5),
    device: str | torch.device | None = None,
    progress: bool = True,
    shards: Shards | None = None,
) -> RobustnessReport:
    """Accuracy of each method under each test-time condition, with images per second.

    ``model`` has ``zero_shot_logits(pixel_values, class_embeds, strategy, aggregation)``; ``class_embeds`` are
    its normalised class embeddings (computed once). Throughput counts preprocessing-free model time only (per
    process). With ``shards`` (several processes, see :mod:`hf_equivariant.eval.distributed`) each process
    evaluates its share of the batches and every process returns the same report as a single-process run (up to
    throughput).
    """
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r}; choose from {sorted(METHODS)}")
    for c in conditions:
        if c not in CONDITIONS:
            raise ValueError(f"unknown condition {c!r}; choose from {CONDITIONS}")
    shards = shards or Shards()
    if device is None:
        device = class_embeds.device
    count = data.num_batches(batch_size)
    mine = shards.mine(count)
    # Preprocess this process's batches once; draw each condition's transforms once for the whole set (the same
    # draws, in the same order, as batch-by-batch), shared by all methods.
    batches = {b: tuple(x.to(device) if i == 0 else x for i, x in enumerate(data.batch(b, batch_size))) for b in mine}
    report = RobustnessReport(meta={"num_images": len(data), "num_classes": len(data.classnames), "seed": seed,
                                    "batch_size": batch_size, "device": str(device), "processes": shards.world})
    bar = tqdm(total=len(methods) * len(conditions) * len(mine), disable=not progress or not shards.is_main,
               desc="robustness")
    for ci, condition in enumerate(conditions):
        generator = torch.Generator().manual_seed(seed * 1000 + ci)
        elements = random_transform_elements(condition, len(data), generator)
        moved = {b: _D4.apply(p, elements[b * batch_size:b * batch_size + p.shape[0]].to(p.device))
                 for b, (p, _) in batches.items()}
        for method in methods:
            strategy, aggregation = METHODS[method]

            def run(b: int) -> tuple[dict[int, int], float, float]:
                pixels, labels = moved[b], batches[b][1]
                with torch.inference_mode():
                    start = time.perf_counter()
                    logits = model.zero_shot_logits(pixels, class_embeds, strategy, aggregation)
                    if logits.is_cuda:
                        torch.cuda.synchronize()
                    seconds = time.perf_counter() - start
                encoded = getattr(getattr(model, "scorer", None), "last_encoded_images", pixels.shape[0])
                ranked = logits.float().topk(min(max(topk), logits.shape[-1]), dim=-1).indices.cpu()
                bar.update()
                return ({k: int((ranked[:, :k] == labels[:, None]).any(-1).sum()) for k in topk}, seconds,
                        float(encoded))

            results = shards.map(run, list(range(count)))
            seconds = sum(r[1] for r in results)
            row = {"method": method, "condition": condition, "strategy": strategy, "aggregation": aggregation}
            row.update({f"top{k}": sum(r[0][k] for r in results) / len(data) for k in topk})
            row["images_per_s"] = len(data) / seconds if seconds > 0 else float("inf")
            row["encodes_per_image"] = sum(r[2] for r in results) / len(data)
            report.rows.append(row)
    bar.close()
    return report


# ---------------------------------------------------------------------------------------------------- datasets
def _pil_from_digit(row: Any) -> Any:
    from PIL import Image
    import numpy as np

    return Image.fromarray((np.asarray(row, dtype=np.float64).reshape(8, 8) * 255.0 / 16.0).round().astype("uint8")
                           ).convert("RGB")


def digits_image_set(preprocess: Callable[[Sequence[Any]], torch.Tensor] | None, split: str = "test",
                     test_fraction: float = 0.3, seed: int = 0) -> ImageSet:
    """scikit-learn's bundled handwritten digits (1797 real 8x8 images, 10 classes) as RGB PIL images.

    The split is stratified and seeded (``split`` is ``"train"``, ``"test"`` or ``"all"``).
    """
    digits = load_digits_data()
    labels = torch.as_tensor(digits.target, dtype=torch.long)
    if split not in ("train", "test", "all"):
        raise ValueError(f"unknown split {split!r}; choose 'train', 'test' or 'all'")
    indices = torch.arange(len(labels)) if split == "all" else digit_split_indices(labels, test_fraction,
                                                                                    seed=seed)[split]
    images = [_pil_from_digit(digits.data[int(i)]) for i in indices]
    return ImageSet(images, labels[indices], list(DIGIT_NAMES), preprocess)


def image_folder_set(root: str | os.PathLike, preprocess: Callable[[Sequence[Any]], torch.Tensor],
                     classnames: Sequence[str] | None = None) -> ImageSet:
    """A folder with one sub-folder of images per class (ImageNetV2's layout: folders ``0``..``999`` get the
    ImageNet class names from open_clip's bundled metadata)."""
    from PIL import Image

    root = os.fspath(root)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"image folder not found: {root}")
    folders = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    if not folders:
        raise ValueError(f"{root} has no class sub-folders")
    if all(d.isdigit() for d in folders):
        folders = sorted(folders, key=int)
    paths, labels = [], []
    for label, folder in enumerate(folders):
        for name in sorted(os.listdir(os.path.join(root, folder))):
            if name.lower().endswith((".png", ".jpg", ".jpeg", ".bmp", ".webp", ".jpeg")):
                paths.append(os.path.join(root, folder, name))
                labels.append(int(folder) if folder.isdigit() else label)
    if classnames is None:
        if len(folders) == 1000 and all(d.isdigit() for d in folders):
            from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

            classnames = list(IMAGENET_CLASSNAMES)
        else:
            classnames = [f.replace("_", " ") for f in folders]

    def load(chunk: Sequence[str]) -> torch.Tensor:
        images = []
        for p in chunk:
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
        return preprocess(images)

    return ImageSet(paths, torch.tensor(labels), list(classnames), load)


def cifar100_set(root: str | os.PathLike, preprocess: Callable[[Sequence[Any]], torch.Tensor],
                 download: bool = True) -> ImageSet:
    """The CIFAR-100 test set through torchvision (downloads to ``root`` when allowed and reachable)."""
    from torchvision.datasets import CIFAR100

    data = CIFAR100(os.fspath(root), train=False, download=download)
    from PIL import Image

    images = [Image.fromarray(a) for a in data.data]
    names = [c.replace("_", " ") for c in data.classes]
    return ImageSet(images, torch.tensor(data.targets), names, preprocess)
