"""Configuration of :class:`MultiInputEquivariantModel` (a standard Hugging Face config, saved as ``config.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PretrainedConfig

from ...actions.registry import INPUT_GROUPS
from ..base import EquivariantConfigMixin

INPUT_GROUP_NAMES: tuple[str, ...] = tuple(INPUT_GROUPS)

__all__ = ["MultiInputEquivariantConfig"]

_READOUTS = ("concat", "sum")
_REDUCTIONS = ("sum", "mean")
_NORMS = ("group", "batch", "none")


class MultiInputEquivariantConfig(EquivariantConfigMixin, PretrainedConfig):
    """Settings of a multi-input equivariant classifier (the paper's design 1).

    Args:
        groups: one group name per input, from ``"id"``, ``"rot90"``, ``"flip"`` (= ``"hflip"``), ``"vflip"``,
            ``"rot90_flip"``, ``"rot90_vflip"``. The number of inputs is ``len(groups)``.
        num_channels, image_size: shape of each input image (``num_channels x image_size x image_size``).
        conv_channels: output channels of each equivariant conv layer of the default small CNN backbone.
        kernel_size: convolution kernel size of the CNN (odd, "same" padding).
        pool: max-pool by 2 after each conv layer.
        norm: normalisation in each conv layer: ``"group"`` (GroupNorm, per example, the default), ``"batch"``
            (BatchNorm; exact too, but its running statistics lag behind the averaged features of equivariant
            branches, which made evaluation accuracy unstable in the digits experiment) or ``"none"``.
        fusion: add the invariant-symmetric fusion term in every multi-input layer.
        share_weights: one branch (and one fusion) network for all inputs, rather than one per input.
        fusion_reduction: combine the other inputs' fusion features by ``"sum"`` or ``"mean"``.
        fusion_scale_init: initial value of the learned scale of the fusion term.
        readout: ``"concat"`` for ordered inputs, ``"sum"`` for exchangeable ones.
        hidden_size, classifier_dropout: width and dropout of the classification head.
        backbone_config: a transformers vision config as a dict (with ``model_type``), to use that model as the
            per-input feature extractor instead of the CNN; ``None`` for the CNN.
    """

    model_type = "hf_equivariant_multi_input"

    def __init__(
        self,
        groups: Sequence[str] = ("rot90", "rot90"),
        num_channels: int = 1,
        image_size: int = 8,
        conv_channels: Sequence[int] = (16, 32),
        kernel_size: int = 3,
        pool: bool = True,
        norm: str = "group",
        fusion: bool = True,
        share_weights: bool = True,
        fusion_reduction: str = "sum",
        fusion_scale_init: float = 0.1,
        readout: str = "concat",
        hidden_size: int = 64,
        classifier_dropout: float = 0.1,
        backbone_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if "id2label" not in kwargs:
            kwargs.setdefault("num_labels", 10)
        super().__init__(**kwargs)
        groups = [groups] if isinstance(groups, str) else list(groups)
        if not groups:
            raise ValueError("groups must name one group per input, e.g. ['rot90', 'flip']")
        unknown = [g for g in groups if g not in INPUT_GROUP_NAMES]
        if unknown:
            raise ValueError(f"unknown group name(s) {unknown} in config; known: {list(INPUT_GROUP_NAMES)}")
        if readout not in _READOUTS:
            raise ValueError(f"readout must be one of {_READOUTS}, got {readout!r}")
        if fusion_reduction not in _REDUCTIONS:
            raise ValueError(f"fusion_reduction must be one of {_REDUCTIONS}, got {fusion_reduction!r}")
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd (same padding keeps feature maps square), got {kernel_size}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
        if backbone_config is not None and "model_type" not in backbone_config:
            raise ValueError("backbone_config must be a transformers config dict with a 'model_type' key")
        self.groups = groups
        self.num_channels = int(num_channels)
        self.image_size = int(image_size)
        self.conv_channels = [int(c) for c in conv_channels]
        self.kernel_size = int(kernel_size)
        self.pool = bool(pool)
        self.norm = norm
        self.fusion = bool(fusion)
        self.share_weights = bool(share_weights)
        self.fusion_reduction = fusion_reduction
        self.fusion_scale_init = float(fusion_scale_init)
        self.readout = readout
        self.hidden_size = int(hidden_size)
        self.classifier_dropout = float(classifier_dropout)
        self.backbone_config = dict(backbone_config) if backbone_config is not None else None

    @property
    def num_inputs(self) -> int:
        return len(self.groups)
