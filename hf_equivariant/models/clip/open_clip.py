"""rot90/flip-invariant zero-shot classification for ``open_clip`` models (``encode_image`` / ``encode_text``).

open_clip models are plain ``nn.Module``s, so they cannot go through ``transformers.pipeline``; this module gives
them the same settings and scorer as :class:`hf_equivariant.EquivariantCLIPModel`:

    import open_clip, hf_equivariant as he
    model = open_clip.create_model("ViT-B-32", pretrained="openai")
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    clf = he.InvariantZeroShotClassifier.imagenet(model, tokenizer, strategy="multi")
    logits = clf(images)           # [B, 1000], identical for every rot90/flip of the images

``open_clip`` is an optional dependency: it is only imported by the helpers that need its bundled metadata.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from .scorer import InvariantImageScorer, ScoringSettings, is_sigmoid_model

__all__ = ["EquivariantOpenCLIP", "InvariantZeroShotClassifier", "format_prompts"]

Template = str | Callable[[str], str]


def format_prompts(classnames: Sequence[str], templates: Sequence[Template]) -> list[str]:
    """Class-major prompts: every template for class 0, then class 1, ... (``{}`` strings or callables)."""
    return [t(c) if callable(t) else t.format(c) for c in classnames for t in templates]


def _image_shape(model: nn.Module, image_size: int | Sequence[int] | None, num_channels: int) -> tuple[int, int, int]:
    size = image_size if image_size is not None else getattr(getattr(model, "visual", None), "image_size", None)
    if size is None:
        raise ValueError("cannot read the model's image size (model.visual.image_size); pass image_size=")
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    return int(num_channels), int(height), int(width)


class EquivariantOpenCLIP(nn.Module):
    """An open_clip model whose image side is invariant to rot90/flip groups.

    ``encode_image`` returns invariant (copy-averaged) features; ``encode_text`` is the base's;
    :meth:`zero_shot_logits` scores images against class embeddings with the configured settings (see
    :class:`ScoringSettings`). SigLIP-style models (with ``logit_bias``) use sigmoid aggregation.
    """

    def __init__(self, model: nn.Module, groups: Sequence[str] = ("rot90", "flip"), strategy: str = "multi",
                 aggregation: str = "mean_prob", *, canonicaliser_seed: int = 0,
                 image_size: int | Sequence[int] | None = None, num_channels: int = 3, **settings: Any) -> None:
        super().__init__()
        for name in ("encode_image", "encode_text", "logit_scale"):
            if not hasattr(model, name):
                raise TypeError(f"{type(model).__name__} has no {name}: expected an open_clip CLIP model")
        unknown = [k for k in settings if k not in ScoringSettings.names()]
        if unknown:
            raise TypeError(f"unknown option(s) {unknown}; known: {list(ScoringSettings.names())}")
        self.model = model
        self.scorer = InvariantImageScorer(groups, _image_shape(model, image_size, num_channels), canonicaliser_seed)
        self.settings = ScoringSettings(strategy=strategy, aggregation=aggregation, **settings)

    def __getattr__(self, name: str) -> Any:
        if name in ScoringSettings.names():  # wrapper.strategy etc. read the settings
            return getattr(self.__dict__["settings"], name)
        return super().__getattr__(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in ScoringSettings.names():  # wrapper.strategy = "full" replaces the (validated) settings
            self.__dict__["settings"] = self.__dict__["settings"].with_(**{name: value})
            return
        super().__setattr__(name, value)

    @property
    def action(self):  # noqa: ANN201 - ImageGroupAction
        return self.scorer.action

    @property
    def sigmoid(self) -> bool:
        return is_sigmoid_model(self.model)

    @property
    def images_per_input(self) -> int:
        """Images the encoder runs per input image with the current settings."""
        return self.scorer.images_per_input(self.settings)

    def _encode(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)

    def encode_image(self, image: torch.Tensor, normalize: bool = False, strategy: str | None = None) -> torch.Tensor:
        """Invariant image features ``[B, D]``: the weighted mean of the copies' features."""
        pooled = self.scorer.encode(self._encode, image, self.settings.with_(strategy=strategy))
        return pooled / pooled.norm(dim=-1, keepdim=True) if normalize else pooled

    def encode_text(self, text: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """The base model's text features (the group does not act on text)."""
        return self.model.encode_text(text, normalize=normalize)

    def class_embeddings(self, tokenizer: Callable[[list[str]], torch.Tensor], classnames: Sequence[str],
                         templates: Sequence[Template] = ("a photo of a {}.",), batch_size: int = 256,
                         progress: bool | None = None) -> torch.Tensor:
        """Zero-shot class weights ``[K, D]``: the renormalised mean of each class's normalised prompt embeddings.

        Computed once per label set by the caller (keep the result); only images are transformed. ``progress``
        shows a bar (default: when there are more than 1,000 prompts).
        """
        prompts = format_prompts(classnames, templates)
        device = self.model.logit_scale.device
        chunks = []
        starts = range(0, len(prompts), batch_size)
        show = len(prompts) > 1000 if progress is None else progress
        with torch.no_grad():
            for start in tqdm(starts, desc="class embeddings", disable=not show, unit="batch"):
                tokens = tokenizer(prompts[start:start + batch_size]).to(device)
                chunks.append(self.model.encode_text(tokens, normalize=True))
        features = torch.cat(chunks).view(len(classnames), len(templates), -1).mean(1)
        return features / features.norm(dim=-1, keepdim=True)

    def zero_shot_logits(self, images: torch.Tensor, class_embeds: torch.Tensor, strategy: str | None = None,
                         aggregation: str | None = None) -> torch.Tensor:
        """Invariant class scores ``[B, K]`` (aggregation-space logits: softmax/sigmoid gives the aggregate)."""
        bias = getattr(self.model, "logit_bias", None)
        scores, _ = self.scorer.zero_shot_logits(
            self._encode, images, class_embeds, self.model.logit_scale.exp(), bias,
            self.settings.with_(strategy=strategy, aggregation=aggregation), sigmoid=self.sigmoid)
        return scores

    def forward(self, image: torch.Tensor | None = None, text: torch.Tensor | None = None) -> dict[str, Any]:
        """Like open_clip's ``forward(output_dict=True)``, with invariant normalised image features."""
        out: dict[str, Any] = {"logit_scale": self.model.logit_scale.exp()}
        if image is not None:
            out["image_features"] = self.encode_image(image, normalize=True)
        if text is not None:
            out["text_features"] = self.encode_text(text, normalize=True)
        if getattr(self.model, "logit_bias", None) is not None:
            out["logit_bias"] = self.model.logit_bias
        return out

    # check_equivariance protocol (inputs: {"images": ..., "class_embeds": ...})
    def equivariance_group_order(self) -> int:
        return self.action.order

    def equivariance_element_label(self, element: int) -> str:
        return self.action.element_label(element)

    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        return {**inputs, "images": self.action.transform_inputs(inputs["images"], int(element))}

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self.zero_shot_logits(inputs["images"], inputs["class_embeds"])

    def equivariance_transform_outputs(self, output: torch.Tensor, element: int) -> torch.Tensor:
        return output


class InvariantZeroShotClassifier(nn.Module):
    """An image classifier from an open_clip model, class names and prompt templates: ``forward(images)`` returns
    invariant class scores ``[B, K]``. Text embeddings are computed once, at construction."""

    def __init__(self, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], classnames: Sequence[str],
                 templates: Sequence[Template] = ("a photo of a {}.",), progress: bool | None = None,
                 **wrapper_kwargs: Any) -> None:
        super().__init__()
        self.wrapper = model if isinstance(model, EquivariantOpenCLIP) else EquivariantOpenCLIP(model, **wrapper_kwargs)
        self.classnames = list(classnames)
        self.register_buffer("class_embeds", self.wrapper.class_embeddings(tokenizer, self.classnames, templates,
                                                                           progress=progress), persistent=False)

    @classmethod
    def imagenet(cls, model: nn.Module, tokenizer: Callable[[list[str]], torch.Tensor], templates: str = "openai",
                 **wrapper_kwargs: Any) -> InvariantZeroShotClassifier:
        """The 1000 ImageNet classes with open_clip's bundled ``"openai"`` (80) or ``"simple"`` templates."""
        from open_clip.zero_shot_metadata import (IMAGENET_CLASSNAMES, OPENAI_IMAGENET_TEMPLATES,
                                                  SIMPLE_IMAGENET_TEMPLATES)

        chosen = {"openai": OPENAI_IMAGENET_TEMPLATES, "simple": SIMPLE_IMAGENET_TEMPLATES}.get(templates)
        if chosen is None:
            raise ValueError(f"unknown template set {templates!r}; choose 'openai' or 'simple'")
        return cls(model, tokenizer, IMAGENET_CLASSNAMES, chosen, **wrapper_kwargs)

    def forward(self, images: torch.Tensor, strategy: str | None = None,
                aggregation: str | None = None) -> torch.Tensor:
        return self.wrapper.zero_shot_logits(images, self.class_embeds, strategy, aggregation)
