"""What every wrapper shares: a config mixin for the common fields and ``EquivariantPreTrainedModel``.

Families (``causal_lm/``, ``clip/``, ``multi_input/``) declare only what differs: their base-model Auto class, the
input the group acts on, whether outputs are equivariant or invariant, and their model card sections. The base
class provides the rest: weight-init hand-off to the base model, the ``check_equivariance`` protocol, light
(config-only) saves that reload the base by name, the model card on save and ``push_to_hub``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel
from transformers.utils import logging

from ..aggregation import check_aggregation
from ..hub import EquivariantPushMixin, render_model_card
from ..plans import check_branch_weighting

logger = logging.get_logger(__name__)

__all__ = ["EquivariantConfigMixin", "EquivariantPreTrainedModel", "nested_config", "check_bool", "check_count"]


def nested_config(value: PretrainedConfig | dict[str, Any] | None, field: str) -> PretrainedConfig | None:
    """Rebuild a nested base-model config saved as a dict (it must name its ``model_type``)."""
    if not isinstance(value, dict):
        return value
    data = dict(value)
    model_type = data.pop("model_type", None)
    if model_type is None:
        raise ValueError(f"{field} needs a 'model_type' to rebuild the base model's config")
    return AutoConfig.for_model(model_type, **data)


def check_bool(name: str, value: Any) -> bool:
    """``value`` if it is a real boolean; strings such as ``"no"`` are an error, not silently ``True``."""
    if isinstance(value, bool):
        return value
    raise ValueError(f"{name} must be true or false, got {value!r} ({type(value).__name__})")


def check_count(name: str, value: Any, allow_none: bool = True) -> int | None:
    """A positive integer (or ``None`` when allowed); floats, strings and booleans are errors."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer{' or null' if allow_none else ''}, got {value!r}")
    return int(value)


class EquivariantConfigMixin:
    """The fields and checks shared by every wrapper config (mix into a ``PretrainedConfig`` subclass)."""

    #: Strategies the family accepts.
    allowed_strategies: ClassVar[tuple[str, ...]] = ("full", "multi", "canonical")

    def set_equivariant_fields(self, *, strategy: str, aggregation: str, branch_weighting: str,
                               base_model_name_or_path: str | None, base_model_revision: str | None = None,
                               save_base_weights: bool = True) -> None:
        if not isinstance(strategy, str) or strategy not in self.allowed_strategies:
            raise ValueError(f"unknown strategy {strategy!r}; choose one of {self.allowed_strategies}")
        self.strategy = strategy
        self.aggregation = check_aggregation(aggregation)
        self.branch_weighting = check_branch_weighting(branch_weighting)
        if base_model_name_or_path is not None and not isinstance(base_model_name_or_path, str):
            raise ValueError(f"base_model_name_or_path must be a string, got {base_model_name_or_path!r}")
        self.base_model_name_or_path = base_model_name_or_path
        self.base_model_revision = base_model_revision
        self.save_base_weights = check_bool("save_base_weights", save_base_weights)


class EquivariantPreTrainedModel(EquivariantPushMixin, PreTrainedModel):
    """Shared base of the wrappers around a Hugging Face base model (held as ``self.base``)."""

    base_model_prefix = "base"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    #: Auto class that loads the base model by name (light saves, ``from_base`` with a name).
    base_auto_class: ClassVar[Any] = None
    #: The input key the group acts on (``"input_ids"``, ``"pixel_values"``).
    group_input: ClassVar[str] = "input_ids"
    #: ``"equivariant"`` (outputs move with the input) or ``"invariant"``.
    output_kind: ClassVar[str] = "equivariant"
    #: Pipeline tag and tags of the model card.
    card_pipeline_tag: ClassVar[str | None] = None
    card_tags: ClassVar[tuple[str, ...]] = ()

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def load_base(cls, model_or_name: Any, revision: str | None = None, **loading_kwargs: Any) -> tuple[Any, str | None]:
        """``(base model, its name or path)`` from an instance, a Hub id or a local folder."""
        if isinstance(model_or_name, (str, os.PathLike)):
            name = str(model_or_name)
            return cls.base_auto_class.from_pretrained(name, revision=revision, **loading_kwargs), name
        if loading_kwargs:
            raise TypeError(f"unknown option(s) {sorted(loading_kwargs)}: loading options only apply when the base "
                            "model is given by name")
        return model_or_name, getattr(model_or_name.config, "_name_or_path", None) or None

    def _init_weights(self, module: torch.nn.Module) -> None:
        """The wrapper's modules are the base model's: use the base's scheme (it also rebuilds derived buffers, such
        as rotary tables, after a meta-device load). Families with modules of their own extend this."""
        base = getattr(self, "base", None)
        if module is not self and base is not None and hasattr(base, "_init_weights"):
            base._init_weights(module)

    # ------------------------------------------------------------------ check_equivariance protocol
    @property
    def action(self) -> Any:  # pragma: no cover - every family defines it
        raise NotImplementedError

    def equivariance_group_order(self) -> int:
        return self.action.order

    def equivariance_element_label(self, element: int) -> str:
        return self.action.element_label(int(element))

    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        moved = dict(inputs)
        moved[self.group_input] = self.action.transform_inputs(inputs[self.group_input], int(element))
        return moved

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:  # pragma: no cover - per family
        raise NotImplementedError

    def equivariance_transform_outputs(self, output: torch.Tensor, element: int) -> torch.Tensor:
        if self.output_kind == "invariant":
            return output
        return self.action.transform_outputs(output, int(element))

    # ------------------------------------------------------------------ saving
    def model_card_sections(self) -> tuple[str, str, str, Sequence[tuple[str, str]]]:  # pragma: no cover
        """``(title, summary, usage, sections)`` of the model card; every family defines it."""
        raise NotImplementedError

    def model_card(self) -> str:
        """The README.md written next to a save."""
        title, summary, usage, sections = self.model_card_sections()
        return render_model_card(title=title, summary=summary,
                                 base_model=getattr(self.config, "base_model_name_or_path", None),
                                 pipeline_tag=self.card_pipeline_tag, tags=self.card_tags, sections=sections,
                                 usage=usage)

    def write_model_card(self, save_directory: str | os.PathLike) -> str:
        path = os.path.join(os.fspath(save_directory), "README.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.model_card())
        return path

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, save_base_weights: bool | None = None,
                        tokenizer: Any = None, image_processor: Any = None, processor: Any = None,
                        **kwargs: Any) -> None:
        """Save the wrapper: full weights (default) or a light config that names the base model.

        A tokenizer / image processor given here (or held by the wrapper) is saved alongside, so
        ``pipeline(task, model=path)`` works from the folder or a Hub repo; a model card describes the guarantee.
        """
        full = getattr(self.config, "save_base_weights", True) if save_base_weights is None else bool(
            save_base_weights)
        os.makedirs(save_directory, exist_ok=True)
        original = getattr(self.config, "save_base_weights", True)
        self.config.save_base_weights = full
        try:
            if full:
                super().save_pretrained(save_directory, *args, **kwargs)
            else:
                if not self.config.base_model_name_or_path:
                    raise ValueError("a light save needs base_model_name_or_path (the Hub id or folder of the base "
                                     "model); wrap a model loaded by name, or save with save_base_weights=True")
                self.config.save_pretrained(save_directory)
                generation_config = getattr(self, "generation_config", None)
                if generation_config is not None:
                    generation_config.save_pretrained(save_directory)
        finally:
            self.config.save_base_weights = original
        for component in (tokenizer if tokenizer is not None else getattr(self, "tokenizer", None),
                          image_processor, processor):
            if component is not None:
                component.save_pretrained(save_directory)
        self.write_model_card(save_directory)

    @classmethod
    def _load_light(cls, config: Any, kwargs: dict[str, Any]) -> Any:
        """A light checkpoint: the base reloaded by name, the wrapper rebuilt around it."""
        if not config.base_model_name_or_path:
            raise ValueError("this light checkpoint does not name its base model (base_model_name_or_path)")
        loading = {k: v for k, v in kwargs.items() if k not in ("revision", "subfolder")}
        base = cls.base_auto_class.from_pretrained(config.base_model_name_or_path,
                                                   revision=config.base_model_revision, **loading)
        model = cls(config, base_model=base)
        model.eval()
        return model


def install_trainer_card_hook() -> None:
    """Placeholder (filled in below)."""
