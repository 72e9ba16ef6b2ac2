"""``EquivariantCLIPModel``: a CLIP (or SigLIP) model whose zero-shot scores are exactly invariant to rot90/flips.

The wrapper is a normal ``PreTrainedModel``: ``forward`` takes what ``CLIPModel.forward`` takes and returns
``logits_per_image``, so ``pipeline("zero-shot-image-classification")`` works unchanged. Only images are
transformed; text embeddings are computed once per label set and cached (inference only).
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import AutoModel, PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.clip.modeling_clip import CLIPOutput
from transformers.utils import logging

from ...actions.image import ImageGroupAction
from ..base import EquivariantPreTrainedModel
from .configuration import EquivariantCLIPConfig, EquivariantSiglipConfig
from .scorer import InvariantImageScorer, ScoringSettings, is_sigmoid_model

logger = logging.get_logger(__name__)

__all__ = ["EquivariantCLIPModel", "EquivariantSiglipModel", "render_clip_model_card"]

_TEXT_CACHE_SIZE = 16


class EquivariantCLIPModel(EquivariantPreTrainedModel):
    """Zero-shot image classification invariant to a group of image transforms (rot90, flips).

    Build one with :meth:`from_base`; reload a saved one with ``from_pretrained`` or the Auto classes
    (``AutoModelForZeroShotImageClassification``) after ``import hf_equivariant``.
    """

    config_class = EquivariantCLIPConfig
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    base_auto_class = AutoModel
    auto_classes = ("AutoModel", "AutoModelForZeroShotImageClassification")
    group_input = "pixel_values"
    output_kind = "invariant"
    card_template = "clip"
    card_pipeline_tag = "zero-shot-image-classification"
    card_tags = ("robustness", "clip")

    def __init__(self, config: EquivariantCLIPConfig, base_model: PreTrainedModel | None = None,
                 processor: Any = None) -> None:
        super().__init__(config)
        if base_model is None:
            if config.base_config is None:
                raise ValueError("the config has no base_config: build the wrapper with from_base(...)")
            base_model = AutoModel.from_config(config.base_config)
        for name in ("get_image_features", "get_text_features", "logit_scale"):
            if not hasattr(base_model, name):
                raise TypeError(f"{type(base_model).__name__} has no {name}: expected a CLIP-style dual encoder "
                                "(CLIPModel, SiglipModel, ...)")
        self.base = base_model
        self.scorer = InvariantImageScorer(config.groups, config.image_shape, config.canonicaliser_seed)
        self._text_cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self.processor = processor  # saved beside the weights, so pipeline(task, model=folder) finds it
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(cls, model_or_name: PreTrainedModel | str | os.PathLike, groups: Sequence[str] = ("rot90", "flip"),
                  canonicaliser_seed: int = 0, revision: str | None = None, processor: Any = None,
                  **options: Any) -> EquivariantCLIPModel:
        """Wrap a CLIP-style model (an instance, a Hub id or a local folder).

        ``options`` are the scoring settings (``strategy``, ``aggregation``, ``branch_weighting``, ``deduplicate``,
        ``max_batch``; see :class:`ScoringSettings`) and, for a base given by name, loading options (``dtype``,
        ...). Picks :class:`EquivariantSiglipModel` for SigLIP-style (sigmoid) bases. ``processor`` (loaded from
        the base's folder or repo when it is given by name) is saved and pushed with the wrapper.
        """
        settings = {k: options.pop(k) for k in ScoringSettings.names() if k in options}
        base, name = cls.load_base(model_or_name, revision=revision, **options)
        if processor is None and isinstance(model_or_name, (str, os.PathLike)):
            processor = _try_load_processor(os.fspath(model_or_name), revision, options)
        model_cls = EquivariantSiglipModel if is_sigmoid_model(base) else EquivariantCLIPModel
        config = model_cls.config_class(base_config=base.config, groups=list(groups),
                                        canonicaliser_seed=canonicaliser_seed, base_model_name_or_path=name,
                                        base_model_revision=revision, **settings)
        model = model_cls(config, base_model=base, processor=processor)
        model.train(base.training)
        model.track_base(revision, cache_dir=options.get("cache_dir"))
        return model

    @classmethod
    def _class_for_config(cls, config: Any) -> type[EquivariantCLIPModel]:
        """A saved SigLIP wrapper loads as :class:`EquivariantSiglipModel` whichever class is asked."""
        return EquivariantSiglipModel if config.uses_sigmoid else EquivariantCLIPModel

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """The processor saved beside the weights, if any."""
        self.processor = _try_load_processor(os.fspath(path), hub_kwargs.get("revision"), hub_kwargs)

    def _init_weights(self, module: torch.nn.Module) -> None:
        """New modules only: the reference tensor is rebuilt from its seed; base modules use the base's scheme."""
        if isinstance(module, InvariantImageScorer):
            module.reset_reference()
        else:
            super()._init_weights(module)

    # ------------------------------------------------------------------ group machinery
    @property
    def action(self) -> ImageGroupAction:
        """The image group acting on ``pixel_values``."""
        return self.scorer.action

    @property
    def sigmoid(self) -> bool:
        return self.config.uses_sigmoid

    @property
    def settings(self) -> ScoringSettings:
        """The scoring settings read from the (mutable) config."""
        return ScoringSettings.from_object(self.config)

    @property
    def images_per_input(self) -> int:
        """Images the encoder runs per input image with the current settings."""
        return self.scorer.images_per_input(self.settings)

    @contextlib.contextmanager
    def using(self, **settings: Any) -> Iterator[EquivariantCLIPModel]:
        """Temporarily change scoring settings (``strategy``, ``aggregation``, ``max_batch``, ...)."""
        unknown = [k for k in settings if k not in ScoringSettings.names()]
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {list(ScoringSettings.names())}")
        self.settings.with_(**settings)  # validates before anything changes
        old = {k: getattr(self.config, k) for k in settings}
        try:
            for k, v in settings.items():
                setattr(self.config, k, v)
            yield self
        finally:
            for k, v in old.items():
                setattr(self.config, k, v)

    # ------------------------------------------------------------------ features
    def _encode_images(self, image_kwargs: dict[str, Any]) -> Any:
        def encode(images: torch.Tensor) -> torch.Tensor:
            out = self.base.get_image_features(pixel_values=images, **image_kwargs)
            return out if torch.is_tensor(out) else out.pooler_output
        return encode

    def _base_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                            position_ids: torch.Tensor | None = None) -> torch.Tensor:
        out = self.base.get_text_features(input_ids=input_ids, attention_mask=attention_mask,
                                          position_ids=position_ids)
        return out if torch.is_tensor(out) else out.pooler_output

    def _image_kwargs(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        accepted = _named_params(self.base.get_image_features)
        dropped = [k for k in kwargs if k not in accepted or kwargs[k] is None]
        if dropped:
            logger.debug("EquivariantCLIPModel ignores %s (not accepted by the base image encoder)", dropped)
        return {k: v for k, v in kwargs.items() if k in accepted and v is not None}

    def text_embeddings(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                        position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """L2-normalised text embeddings ``[T, D]``.

        Cached per label set when gradients are off: the pipeline calls the model once per image with the same
        labels, and the group acts only on images. The key covers the token ids, mask, positions and a fingerprint
        of the text tower's weights (their identity, storage and a position-weighted checksum of their values), so
        any change of the weights, in place through ``.data`` or by swapping modules, invalidates it.
        """
        if torch.is_grad_enabled():
            features = self._base_text_features(input_ids, attention_mask, position_ids)
            return features / features.norm(dim=-1, keepdim=True)
        key = (_tensor_key(input_ids), _tensor_key(attention_mask), _tensor_key(position_ids),
               _weights_fingerprint(self._text_parameters()))
        cached = self._text_cache.get(key)
        if cached is not None:
            self._text_cache.move_to_end(key)
            return cached
        features = self._base_text_features(input_ids, attention_mask, position_ids)
        features = features / features.norm(dim=-1, keepdim=True)
        self._text_cache[key] = features
        while len(self._text_cache) > _TEXT_CACHE_SIZE:
            self._text_cache.popitem(last=False)
        return features

    def _text_parameters(self) -> list[torch.nn.Parameter]:
        """The text tower's parameters (every parameter when the base names none as text)."""
        named = [p for n, p in self.base.named_parameters() if n.startswith(("text_model.", "text_projection",
                                                                             "text."))]
        return named or list(self.base.parameters())

    def clear_text_cache(self) -> None:
        """Forget cached text embeddings."""
        self._text_cache.clear()

    def class_embeddings(self, tokenizer: Any, classnames: Sequence[str],
                         templates: Sequence[Any] = ("a photo of a {}.",)) -> torch.Tensor:
        """Zero-shot class weights ``[K, D]``: per class, the renormalised mean of its prompts' embeddings.

        ``templates`` are format strings with ``{}`` or callables taking the class name.
        """
        prompts = [t(c) if callable(t) else t.format(c) for c in classnames for t in templates]
        padding: Any = "max_length" if self.sigmoid else True
        kwargs = {"max_length": 64, "truncation": True} if self.sigmoid else {}
        tokens = tokenizer(prompts, padding=padding, return_tensors="pt", **kwargs)
        mask = tokens.get("attention_mask")
        with torch.no_grad():
            features = self.text_embeddings(tokens["input_ids"].to(self.device),
                                            None if mask is None else mask.to(self.device))
        features = features.view(len(classnames), len(templates), -1).mean(1)
        return features / features.norm(dim=-1, keepdim=True)

    def _score(self, pixel_values: torch.Tensor, class_embeds: torch.Tensor, settings: ScoringSettings,
               image_kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if pixel_values is None:
            raise ValueError("pixel_values are required: the group acts on images")
        pixel_values = pixel_values.to(dtype=self.base.dtype, device=self.base.device)
        bias = getattr(self.base, "logit_bias", None)
        return self.scorer.zero_shot_logits(self._encode_images(image_kwargs), pixel_values, class_embeds,
                                            self.base.logit_scale.exp(), bias, settings, sigmoid=self.sigmoid)

    def zero_shot_logits(self, pixel_values: torch.Tensor, class_embeds: torch.Tensor, strategy: str | None = None,
                         aggregation: str | None = None, **image_kwargs: Any) -> torch.Tensor:
        """Invariant class scores ``[B, K]`` against normalised class embeddings (see :meth:`class_embeddings`)."""
        settings = self.settings.with_(strategy=strategy, aggregation=aggregation)
        return self._score(pixel_values, class_embeds, settings, self._image_kwargs(image_kwargs))[0]

    def get_image_features(self, pixel_values: torch.Tensor, **kwargs: Any) -> Any:
        """Invariant image features: the weighted mean of the copies' projected features.

        Returns what the base's ``get_image_features`` returns in the installed transformers version (a tensor in
        4.x, a ``BaseModelOutputWithPooling`` whose ``pooler_output`` holds the features in 5.x). For
        ``max_prob`` aggregation these are still the mean features (equizero has no single embedding).
        """
        pixel_values = pixel_values.to(dtype=self.base.dtype, device=self.base.device)
        image_kwargs = self._image_kwargs(kwargs)
        returns_tensor = []

        def tracked(images: torch.Tensor) -> torch.Tensor:
            out = self.base.get_image_features(pixel_values=images, **image_kwargs)
            returns_tensor.append(torch.is_tensor(out))
            return out if torch.is_tensor(out) else out.pooler_output

        pooled = self.scorer.encode(tracked, pixel_values, self.settings)
        return pooled if returns_tensor[0] else BaseModelOutputWithPooling(pooler_output=pooled)

    def get_text_features(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's text features (the group does not act on text)."""
        return self.base.get_text_features(*args, **kwargs)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CLIPOutput | tuple:
        """Scores of every image against every text, invariant to the image group.

        ``logits_per_image`` are aggregation-space logits (for ``mean_prob``: log of the mean probability), so
        the pipeline's softmax (sigmoid for SigLIP) reproduces the aggregate exactly. Keyword arguments the base
        encoders do not take (``token_type_ids`` from some tokenizers) are dropped.
        """
        if input_ids is None:
            raise ValueError("input_ids (the tokenized labels) are required")
        text_embeds = self.text_embeddings(input_ids, attention_mask, position_ids)
        logits_per_image, image_embeds = self._score(pixel_values, text_embeds, self.settings,
                                                     self._image_kwargs(kwargs))
        logits_per_text = logits_per_image.t()
        loss = _contrastive_loss(logits_per_text, self.sigmoid) if return_loss else None
        output = CLIPOutput(loss=loss, logits_per_image=logits_per_image, logits_per_text=logits_per_text,
                            text_embeds=text_embeds, image_embeds=image_embeds)
        use_dict = return_dict if return_dict is not None else getattr(self.config, "use_return_dict", True)
        return output if use_dict else output.to_tuple()

    # ------------------------------------------------------------------ check_equivariance protocol
    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).logits_per_image

    # ------------------------------------------------------------------ saving
    def card_group_tags(self) -> list[str]:
        return [t.name for t in self.action.transforms]

    def card_context(self, repo: str) -> dict[str, Any]:
        """Values for ``model_cards/clip.md``."""
        config, action = self.config, self.action
        names = [t.name for t in action.transforms]
        orders = [t.order for t in action.transforms]
        commute = ("commute (a direct product)" if action.factors_commute else
                   f"do not commute: they generate a non-abelian group of order {action.order}")
        checkpoint = ("Full: the base weights and the canonicaliser's reference tensor are included."
                      if config.save_base_weights else
                      f"Light: only the wrapper's config; the base model `{self.base_display_name('')}` is loaded at "
                      "load time and the canonicaliser's reference is rebuilt from its seed.")
        return {
            "title": f"{self.base_display_name('CLIP')}, invariant to {' x '.join(names)}",
            "base_model_name": self.base_display_name(""), "repo": repo,
            "group_description": f"Transforms {', '.join(f'`{n}` (order {o})' for n, o in zip(names, orders))} "
                                 f"acting on the last two axes of `pixel_values`; they {commute}. Group order: "
                                 f"{action.order}.",
            "strategy": config.strategy, "aggregation": config.aggregation,
            "branch_weighting": config.branch_weighting, "images_per_input": self.images_per_input,
            "group_order": action.order, "canonicaliser_seed": config.canonicaliser_seed, "checkpoint": checkpoint,
        }


class EquivariantSiglipModel(EquivariantCLIPModel):
    """:class:`EquivariantCLIPModel` for sigmoid dual encoders (SigLIP): scores aggregate with a sigmoid link."""

    config_class = EquivariantSiglipConfig


def render_clip_model_card(model: EquivariantCLIPModel) -> str:
    """README.md for a saved wrapper (kept for 0.1.x callers; wrappers write it on save)."""
    return model.model_card()


def _try_load_processor(path: str, revision: str | None = None, hub_kwargs: dict[str, Any] | None = None) -> Any:
    """The processor (tokenizer + image processor) in a folder or repo, or ``None``."""
    from transformers import AutoProcessor

    kwargs = {k: v for k, v in (hub_kwargs or {}).items() if k in ("cache_dir", "token", "local_files_only")}
    try:
        return AutoProcessor.from_pretrained(path, revision=revision, **kwargs)
    except (OSError, ValueError, TypeError, KeyError):
        return None


def _named_params(fn: Any) -> set[str]:
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"pixel_values"}


def _weights_fingerprint(params: Sequence[torch.nn.Parameter]) -> tuple:
    """Identity, storage and a position-weighted float64 checksum of every parameter: changes with any edit."""
    parts = []
    with torch.no_grad():
        for p in params:
            flat = p.detach().reshape(-1).double()
            ramp = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64).remainder_(65521).add_(1)
            parts.append((id(p), p.data_ptr(), tuple(p.shape), float(flat.sum()), float((flat * ramp).sum())))
    return tuple(parts)


def _tensor_key(t: torch.Tensor | None) -> tuple | None:
    if t is None:
        return None
    return (tuple(t.shape), str(t.dtype), str(t.device), t.detach().cpu().numpy().tobytes())


def _contrastive_loss(logits_per_text: torch.Tensor, sigmoid: bool) -> torch.Tensor:
    """CLIP's symmetric cross-entropy, or SigLIP's pairwise sigmoid loss, on the aggregated logits."""
    n = logits_per_text.shape[0]
    if sigmoid:
        labels = 2 * torch.eye(n, device=logits_per_text.device) - 1
        return -torch.nn.functional.logsigmoid(labels * logits_per_text).sum() / n
    target = torch.arange(n, device=logits_per_text.device)
    return (torch.nn.functional.cross_entropy(logits_per_text, target)
            + torch.nn.functional.cross_entropy(logits_per_text.t(), target)) / 2
