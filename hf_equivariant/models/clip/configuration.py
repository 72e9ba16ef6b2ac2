"""Configuration of :class:`EquivariantCLIPModel`: the base dual encoder's config plus the image group, the scoring
settings and the canonicaliser seed, all JSON so a saved wrapper reloads without pickles or remote code."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...actions.registry import image_action
from ..base import EquivariantConfigMixin, check_bool, check_count
from .scorer import IMAGE_STRATEGIES

__all__ = ["EquivariantCLIPConfig", "EquivariantSiglipConfig"]


class EquivariantCLIPConfig(EquivariantConfigMixin, PretrainedConfig):
    """Config of an invariant zero-shot image classifier wrapping a CLIP-style dual encoder.

    Args:
        base_config: the base model's config (``CLIPConfig``, ``SiglipConfig``, ...; or its dict with
            ``model_type``).
        groups: image transform names acting on ``pixel_values``: ``"rot90"``, ``"flip"`` (= ``"hflip"``,
            left-right) and ``"vflip"`` (top-bottom).
        strategy, aggregation, branch_weighting, deduplicate, max_batch: the scoring settings, see
            :class:`~hf_equivariant.models.clip.scorer.ScoringSettings`.
        canonicaliser_seed: seed of the canonicaliser's reference tensor (also saved as a weight).
        base_model_name_or_path / base_model_revision: where the base model came from.
        save_base_weights: ``False`` saves only this config (the base reloads by name; the reference is rebuilt
            from its seed).
    """

    model_type = "hf_equivariant_clip"
    allowed_strategies = IMAGE_STRATEGIES
    nested_config_field = "base_config"

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
        base_model_revision: str | None = None,
        save_base_weights: bool = True,
        **kwargs: Any,
    ) -> None:
        self.set_nested_config(base_config)
        if isinstance(groups, str) or not groups:
            raise ValueError(f"groups must be a non-empty list of image transform names, got {groups!r}")
        self.groups = [str(g) for g in groups]
        image_action(self.groups)  # clear error for unknown or repeated names
        self.set_equivariant_fields(strategy=strategy, aggregation=aggregation, branch_weighting=branch_weighting,
                                    base_model_name_or_path=base_model_name_or_path,
                                    base_model_revision=base_model_revision, save_base_weights=save_base_weights)
        if isinstance(canonicaliser_seed, bool) or not isinstance(canonicaliser_seed, int):
            raise ValueError(f"canonicaliser_seed must be an integer, got {canonicaliser_seed!r}")
        self.canonicaliser_seed = int(canonicaliser_seed)
        self.deduplicate = check_bool("deduplicate", deduplicate)
        self.max_batch = check_count("max_batch", max_batch)
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
        output["groups"] = list(self.groups)
        return output


class EquivariantSiglipConfig(EquivariantCLIPConfig):
    """The same config for sigmoid dual encoders (SigLIP): its ``model_type`` contains "siglip", which is how
    ``pipeline("zero-shot-image-classification")`` decides to apply a sigmoid instead of a softmax."""

    model_type = "hf_equivariant_siglip"

    def __init__(self, **kwargs: Any) -> None:  # explicit: v5 would otherwise generate a dataclass __init__
        super().__init__(**kwargs)
