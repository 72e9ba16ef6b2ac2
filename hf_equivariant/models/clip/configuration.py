"""Configuration of :class:`EquivariantCLIPModel`: the base dual encoder's config plus the image group, strategy,
aggregation and canonicaliser seed, all JSON so a saved wrapper reloads without pickles or remote code."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...actions.image import ImageGroupAction
from ...aggregation import check_aggregation
from ..config_utils import nested_config
from ...plans import BRANCH_WEIGHTINGS
from .core import check_image_strategy

__all__ = ["EquivariantCLIPConfig", "EquivariantSiglipConfig"]


class EquivariantCLIPConfig(PretrainedConfig):
    """Config of an invariant zero-shot image classifier wrapping a CLIP-style dual encoder.

    Args:
        base_config: the base model's config (``CLIPConfig``, ``SiglipConfig``, ...; or its dict with
            ``model_type``).
        groups: image transform names acting on ``pixel_values``: ``"rot90"``, ``"flip"`` (= ``"hflip"``,
            left-right) and ``"vflip"`` (top-bottom).
        strategy: ``"full"`` (every group element), ``"multi"`` (design 2, sum |Gi| copies), ``"canonical"``
            (one copy) or ``"none"`` (the base model, for comparisons).
        aggregation: ``"mean_prob"`` (equitune), ``"max_prob"`` (equizero) or ``"mean_logits"``.
        branch_weighting: ``"size"`` (every copy equal, as the paper's CLIP code) or ``"equal"`` (multi only).
        canonicaliser_seed: seed of the canonicaliser's reference tensor (also saved as a weight).
        deduplicate: run identical copies once (multi with non-commuting factors shares the canonical image).
        max_batch: cap on images per encoder call (``None`` = all copies in one call).
        base_model_name_or_path: where the base model came from (for the model card).
    """

    model_type = "hf_equivariant_clip"

    def __init__(
        self,
        base_config: PretrainedConfig | dict[str, Any] | None = None,
        groups: list[str] | tuple[str, ...] = ("rot90", "flip"),
        strategy: str = "multi",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        canonicaliser_seed: int = 0,
        deduplicate: bool = True,
        max_batch: int | None = None,
        base_model_name_or_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        base_config = nested_config(base_config, "base_config")
        self.base_config = base_config
        if isinstance(groups, str) or not groups:
            raise ValueError(f"groups must be a non-empty list of image transform names, got {groups!r}")
        self.groups = [str(g) for g in groups]
        ImageGroupAction(self.groups)  # clear error for unknown or repeated names
        self.strategy = check_image_strategy(strategy)
        self.aggregation = check_aggregation(aggregation)
        if branch_weighting not in BRANCH_WEIGHTINGS:
            raise ValueError(f"unknown branch weighting {branch_weighting!r}; choose one of {BRANCH_WEIGHTINGS}")
        self.branch_weighting = branch_weighting
        self.canonicaliser_seed = int(canonicaliser_seed)
        self.deduplicate = bool(deduplicate)
        if max_batch is not None and int(max_batch) < 1:
            raise ValueError(f"max_batch must be a positive integer or None, got {max_batch}")
        self.max_batch = None if max_batch is None else int(max_batch)
        self.base_model_name_or_path = base_model_name_or_path
        super().__init__(**kwargs)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(channels, height, width)`` of the base model's ``pixel_values``."""
        vision = getattr(self.base_config, "vision_config", None)
        if vision is None:
            raise ValueError("the base config has no vision_config: is it a CLIP-style dual encoder?")
        size = vision.image_size
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        return int(getattr(vision, "num_channels", 3)), int(height), int(width)

    @property
    def uses_sigmoid(self) -> bool:
        """Whether class scores are independent sigmoids (SigLIP) rather than a softmax over classes."""
        return "siglip" in self.model_type

    def to_dict(self) -> dict[str, Any]:
        output = super().to_dict()
        if isinstance(self.base_config, PretrainedConfig):
            output["base_config"] = self.base_config.to_dict()
        output["groups"] = list(self.groups)
        return output


class EquivariantSiglipConfig(EquivariantCLIPConfig):
    """The same config for sigmoid dual encoders (SigLIP): its ``model_type`` contains "siglip", which is how
    ``pipeline("zero-shot-image-classification")`` decides to apply a sigmoid instead of a softmax."""

    model_type = "hf_equivariant_siglip"

    def __init__(self, **kwargs: Any) -> None:  # explicit: v5 would otherwise generate a dataclass __init__
        super().__init__(**kwargs)
