"""``MultiInputEquivariantModel``: a Hugging Face classifier over several images, each with its own symmetry group.

Architecture (design 1 of the method): a stack of :class:`MultiInputLayer` over a small CNN (default), or an
invariant stem around any transformers vision backbone followed by a multi-input layer on its features; then a
per-input invariant pooling and an invariant readout (concatenation for ordered inputs, sum for exchangeable ones).
The logits are exactly invariant to independent group elements applied to each input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel
from transformers.utils import ModelOutput, logging

from ...actions.base import GroupAction
from ...actions.registry import input_actions as input_groups
from ...groups import DirectProductGroup, FiniteGroup
from ..base import EquivariantPreTrainedModel
from .configuration import MultiInputEquivariantConfig
from .layers import EquivariantBranch, MultiInputLayer

InputAction = GroupAction


def product_of_inputs(actions: Sequence[GroupAction]) -> DirectProductGroup:
    """The product G1 x ... x GN acting factor-wise on the inputs (factor i is renamed ``input{i}:<name>``)."""
    factors = [FiniteGroup(f"input{i}:{a.group.name}", a.group.mul, tuple(f"in{i}:{label}" for label in a.group.labels),
                           validate=False)
               for i, a in enumerate(actions)]
    return DirectProductGroup(factors)

try:  # transformers >= 5: init helpers that skip weights already loaded from a checkpoint
    from transformers import initialization as _init
except ImportError:  # transformers 4.x
    from torch.nn import init as _init  # type: ignore[no-redef]

logger = logging.get_logger(__name__)

__all__ = ["product_of_inputs", "MultiInputEquivariantModel", "MultiInputEquivariantPreTrainedModel", "MultiInputClassifierOutput",
           "ConvBlock", "BackboneFeatures"]


@dataclass
class MultiInputClassifierOutput(ModelOutput):
    """``loss`` (when labels are given), ``logits`` ``[B, num_labels]`` and the per-input invariant features
    ``view_features`` ``[B, N, D]``."""

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    view_features: torch.FloatTensor | None = None


def make_norm(kind: str, channels: int) -> nn.Module:
    """``"group"``: per-example GroupNorm (same in training and evaluation), ``"batch"``: BatchNorm, ``"none"``."""
    if kind == "group":
        return nn.GroupNorm(math.gcd(4, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; use 'group', 'batch' or 'none'")


class ConvBlock(nn.Sequential):
    """Conv (same padding) -> norm -> ReLU [-> 2x2 max-pool]: the sub-network of one CNN layer.

    It is not equivariant by itself; the multi-input layer makes it so by averaging over each input's group.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pool: bool, norm: str = "group") -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2),
            make_norm(norm, out_channels),
            nn.ReLU(),
        ]
        if pool:
            layers.append(nn.MaxPool2d(2))
        super().__init__(*layers)


class BackboneFeatures(nn.Module):
    """A transformers vision model as a feature extractor: ``[B, C, H, W]`` images -> ``[B, D]`` vectors.

    Uses ``pooler_output`` when the model has one, else the mean of ``last_hidden_state`` over tokens/positions.
    """

    def __init__(self, backbone: PreTrainedModel) -> None:
        super().__init__()
        self.backbone = backbone

    @staticmethod
    def feature_dim(config: Any) -> int:
        """Width of the features a backbone with this config returns."""
        if getattr(config, "hidden_sizes", None):
            return int(config.hidden_sizes[-1])
        if getattr(config, "hidden_size", None):
            return int(config.hidden_size)
        raise ValueError(f"cannot tell the feature width of backbone type {config.model_type!r}")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        out = self.backbone(pixel_values=pixel_values)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            hidden = out.last_hidden_state
            pooled = hidden.mean(dim=(-2, -1)) if hidden.dim() == 4 else hidden.mean(dim=1)
        return pooled.flatten(1)


class MultiInputEquivariantPreTrainedModel(EquivariantPreTrainedModel):
    """Base class: config class, weight init, the input name used by ``Trainer`` and pipelines, the model card."""

    config_class = MultiInputEquivariantConfig
    base_model_prefix = "multi_input"
    main_input_name = "pixel_values"
    group_input = "pixel_values"
    output_kind = "invariant"
    auto_classes = ("AutoModel", "AutoModelForImageClassification")
    card_template = "multi_input"
    card_pipeline_tag = "image-classification"
    card_tags = ("robustness", "multi-input")

    def card_group_tags(self) -> list[str]:
        return list(dict.fromkeys(self.config.groups))

    def card_context(self, repo: str) -> dict[str, Any]:
        """Values for ``model_cards/multi_input.md``."""
        config = self.config
        fusion = " and invariant-symmetric fusion" if config.fusion else ""
        backbone = (f"a {config.backbone_config['model_type']} backbone (invariant stem)" if config.backbone_config
                    else f"{len(config.conv_channels)} multi-input conv layer(s) with equivariant branches")
        return {
            "title": f"Multi-input equivariant classifier ({', '.join(config.groups)})", "repo": repo,
            "num_inputs": config.num_inputs, "num_channels": config.num_channels, "image_size": config.image_size,
            "groups": ", ".join(f"input {i}: `{g}`" for i, g in enumerate(config.groups)),
            "group_order": math.prod(a.order for a in self.actions),
            "architecture": f"Design 1 of multi-group equitune: {backbone}{fusion}, readout `{config.readout}`, "
                            f"{config.num_labels} labels.",
        }

    def _init_weights(self, module: nn.Module) -> None:
        # PyTorch's default (Kaiming-uniform) init rather than N(0, 0.02): these nets are trained from scratch.
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            _init.kaiming_uniform_(module.weight, a=math.sqrt(5))
            if module.bias is not None:
                fan_in = module.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                _init.uniform_(module.bias, -bound, bound)
        elif isinstance(module, nn.GroupNorm):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            _init.ones_(module.weight)
            _init.zeros_(module.bias)
            _init.zeros_(module.running_mean)
            _init.ones_(module.running_var)
            _init.zeros_(module.num_batches_tracked)
        elif isinstance(module, MultiInputLayer) and module.fusion_scale is not None:
            _init.constant_(module.fusion_scale, module.fusion_scale_init)


def _per_input(factory: Callable[[], nn.Module], n: int, share: bool) -> nn.Module | list[nn.Module]:
    return factory() if share else [factory() for _ in range(n)]


class MultiInputEquivariantModel(MultiInputEquivariantPreTrainedModel):
    """Classifier over ``N`` images, invariant to independent transforms of each image by its own group.

    ``forward(pixel_values=[B, N, C, H, W], labels=None)`` returns a :class:`MultiInputClassifierOutput`.
    Implements the ``check_equivariance`` protocol over the product of the per-input groups.
    """

    def __init__(self, config: MultiInputEquivariantConfig) -> None:
        super().__init__(config)
        n, share = config.num_inputs, config.share_weights
        groups = list(config.groups)
        if config.backbone_config is None:
            layers, c_in = [], config.num_channels
            for c_out in config.conv_channels:
                def block(c_in: int = c_in, c_out: int = c_out) -> nn.Module:
                    return ConvBlock(c_in, c_out, config.kernel_size, config.pool, config.norm)

                layers.append(MultiInputLayer(
                    _per_input(block, n, share),
                    _per_input(block, n, share) if config.fusion else None,
                    groups,
                    spatial_output=True,
                    fusion_reduction=config.fusion_reduction,
                    fusion_scale_init=config.fusion_scale_init,
                ))
                c_in = c_out
            self.stem = None
            feature_dim = c_in
        else:
            backbone_config = AutoConfig.for_model(**config.backbone_config)
            width = BackboneFeatures.feature_dim(backbone_config)
            logger.info(
                "multi-input model with a %s backbone: its pooled features are averaged over each input's group "
                "(invariant stem), so the fusion layer after it uses the identity group", backbone_config.model_type)

            def features() -> nn.Module:
                return BackboneFeatures(AutoModel.from_config(backbone_config))

            # Invariant stem: the backbone's pooled features averaged over each input's group (sum_i |Gi| passes).
            self.stem = EquivariantBranch(_per_input(features, n, share), groups, spatial_output=False)

            def head() -> nn.Module:
                return nn.Sequential(nn.Linear(width, config.hidden_size), nn.ReLU())

            # The stem's outputs are invariant, so the following layer acts on them with the identity group.
            layers = [MultiInputLayer(
                _per_input(head, n, share),
                _per_input(head, n, share) if config.fusion else None,
                ["id"] * n,
                spatial_output=False,
                fusion_reduction=config.fusion_reduction,
                fusion_scale_init=config.fusion_scale_init,
            )]
            feature_dim = config.hidden_size
        self.layers = nn.ModuleList(layers)
        readout_dim = feature_dim * n if config.readout == "concat" else feature_dim
        self.classifier = nn.Sequential(
            nn.Linear(readout_dim, config.hidden_size),
            nn.ReLU(),
            nn.Dropout(config.classifier_dropout),
            nn.Linear(config.hidden_size, config.num_labels),
        )
        self.post_init()

    # ----------------------------------------------------------------------------------------------- helpers
    @property
    def actions(self) -> list[InputAction]:
        """The per-input group actions named by the config."""
        return input_groups(self.config.groups)

    @property
    def branch_passes_per_example(self) -> int:
        """Sub-network evaluations per example over all layers (``~2 * sum_i |Gi|`` per fused layer)."""
        total = sum(layer.passes_per_example for layer in self.layers)
        return total + (self.stem.passes_per_example if self.stem is not None else 0)

    @property
    def joint_equitune_passes_per_example(self) -> int:
        """Forward passes that equitune of a joint model over the product group would need: ``prod_i |Gi|``."""
        return math.prod(a.order for a in self.actions)

    def _split_inputs(self, pixel_values: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if not torch.is_tensor(pixel_values):
            pixel_values = torch.stack(list(pixel_values), dim=1)
        n = self.config.num_inputs
        if pixel_values.dim() != 5:
            raise ValueError(f"pixel_values must be [batch, {n} inputs, channels, height, width], "
                             f"got shape {tuple(pixel_values.shape)}")
        if pixel_values.shape[1] != n:
            raise ValueError(f"this model has {n} inputs (groups {self.config.groups}), "
                             f"but pixel_values has {pixel_values.shape[1]} on dim 1")
        if pixel_values.shape[2] != self.config.num_channels:
            raise ValueError(f"expected {self.config.num_channels} channel(s) per image, got {pixel_values.shape[2]}")
        height, width = pixel_values.shape[-2:]
        for i, action in enumerate(self.actions):
            try:
                action.check_shape(int(height), int(width))
            except ValueError as err:
                raise ValueError(f"input {i} (group {self.config.groups[i]!r}): {err}") from None
        return list(pixel_values.unbind(dim=1))

    # ----------------------------------------------------------------------------------------------- forward
    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> MultiInputClassifierOutput | tuple:
        xs = self._split_inputs(pixel_values)
        if self.stem is not None:
            xs = self.stem(xs)
        for layer in self.layers:
            xs = layer(xs)
        # Spatial mean of an equivariant feature map is invariant (vectors are invariant already).
        feats = torch.stack([x.mean(dim=(-2, -1)) if x.dim() == 4 else x for x in xs], dim=1)  # [B, N, D]
        pooled = feats.flatten(1) if self.config.readout == "concat" else feats.sum(dim=1)
        logits = self.classifier(pooled)
        loss = None
        if labels is not None:
            loss = nn.functional.cross_entropy(logits, labels.to(logits.device).long())
        output = MultiInputClassifierOutput(loss=loss, logits=logits, view_features=feats)
        use_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        return output if use_dict else output.to_tuple()

    # -------------------------------------------------------------------------- check_equivariance protocol
    def equivariance_product_group(self) -> DirectProductGroup:
        """G1 x ... x GN, one factor per input."""
        return product_of_inputs(self.actions)

    def equivariance_group_order(self) -> int:
        return self.equivariance_product_group().order

    def equivariance_element_label(self, element: int) -> str:
        return self.equivariance_product_group().label(element)

    def equivariance_transform_inputs(self, inputs: dict, element: int) -> dict:
        parts = self.equivariance_product_group().split(element)
        views = inputs["pixel_values"].unbind(dim=1)
        moved = torch.stack([a.apply(v, int(g)) for a, v, g in zip(self.actions, views, parts)], dim=1)
        return {**inputs, "pixel_values": moved}

    def equivariance_output(self, inputs: dict) -> torch.Tensor:
        return self(pixel_values=inputs["pixel_values"]).logits

    def equivariance_transform_outputs(self, output: torch.Tensor, element: int) -> torch.Tensor:
        return output  # the logits are invariant
