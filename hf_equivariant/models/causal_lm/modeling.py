"""``EquivariantModelForCausalLM``: any Hugging Face causal LM made exactly equivariant to word-swap groups.

The wrapper transforms the input ids of every copy of the plan, runs the base model once on all copies (one batch,
one KV cache), maps each copy's next-token distribution back, symmetrises and averages it. It is a normal
``PreTrainedModel`` with ``GenerationMixin``: ``generate`` (greedy, sampling, beam search, with or without cache),
pipelines, ``Trainer``, ``save_pretrained`` and the Auto classes all work on it.
"""

from __future__ import annotations

import copy
import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, GenerationMixin, PreTrainedModel
from transformers.utils import logging

from ...actions.tokens import TokenPermutationAction, WordSwap
from ...aggregation import to_aggregation_space
from ...executor import aggregate_token_values, expand_token_copies, transform_token_copies
from ...hub import EquivariantPushMixin, write_causal_lm_card
from ...plans import Plan, make_plan
from .configuration import EquivariantCausalLMConfig
from .sharing import RowLayout, build_layout, run_rows

logger = logging.get_logger(__name__)

__all__ = ["EquivariantModelForCausalLM"]

_CACHE_KWARGS = ("cache", "past_key_values")


def _resolve_groups(groups: Sequence[str | WordSwap | dict], tokenizer: Any) -> list[WordSwap]:
    """Turn built-in names, ``WordSwap`` objects and specs into factors."""
    factors = []
    for g in groups:
        if isinstance(g, WordSwap):
            factors.append(g)
        elif isinstance(g, dict):
            factors.append(WordSwap.from_spec(g))
        elif isinstance(g, str):
            if tokenizer is None:
                raise ValueError(f"a tokenizer is needed to resolve the built-in word set {g!r}")
            factors.append(WordSwap.builtin(g, tokenizer))
        else:
            raise ValueError(f"cannot use {g!r} as a group: pass a built-in name, a WordSwap or a spec dict")
    if not factors:
        raise ValueError("at least one group is needed (for example groups=['gender'])")
    return factors


class EquivariantModelForCausalLM(EquivariantPushMixin, PreTrainedModel, GenerationMixin):
    """A causal LM whose next-token distribution satisfies ``P(g.v | g.x) = P(v | x)`` for every group element."""

    config_class = EquivariantCausalLMConfig
    base_model_prefix = "base"
    main_input_name = "input_ids"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_attention_backend = True

    def __init__(self, config: EquivariantCausalLMConfig, base_model: PreTrainedModel | None = None,
                 tokenizer: Any = None) -> None:
        super().__init__(config)
        if base_model is None:
            if config.text_config is None:
                raise ValueError("the config has no text_config: build the wrapper with from_base(...)")
            base_model = AutoModelForCausalLM.from_config(config.text_config)
        self.base = base_model
        self.tokenizer = tokenizer
        if getattr(base_model, "generation_config", None) is not None:
            self.generation_config = copy.deepcopy(base_model.generation_config)
        self._action: TokenPermutationAction | None = None
        self._plan: Plan | None = None
        self._layout: RowLayout | None = None
        self._accepts_logits_to_keep: bool | None = None
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(
        cls,
        model_or_name: PreTrainedModel | str | os.PathLike,
        tokenizer: Any = None,
        groups: Sequence[str | WordSwap | dict] = ("gender",),
        strategy: str = "multi",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        max_rows: int | None = None,
        share_identical_copies: bool = True,
        revision: str | None = None,
        **loading_kwargs: Any,
    ) -> EquivariantModelForCausalLM:
        """Wrap a base causal LM (an instance, a Hub id or a local folder).

        ``groups`` takes built-in names (``"gender"``, ``"race"``, ``"religion"``, ``"sexual_orientation"``) and
        ``WordSwap`` objects. Loading options such as ``torch_dtype`` or ``device_map="auto"`` go to the base
        model's ``from_pretrained``.
        """
        name = None
        if isinstance(model_or_name, (str, os.PathLike)):
            name = str(model_or_name)
            base = AutoModelForCausalLM.from_pretrained(name, revision=revision, **loading_kwargs)
            if tokenizer is None:
                tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        else:
            base = model_or_name
            name = getattr(base.config, "_name_or_path", None) or None
        factors = _resolve_groups(groups, tokenizer)
        width = base.get_output_embeddings().weight.shape[0] if base.get_output_embeddings() is not None \
            else base.config.vocab_size
        if tokenizer is not None and len(tokenizer) > width:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's output layer has {width}: "
                             "they do not belong together (mismatched vocabularies)")
        TokenPermutationAction(factors, width)  # validates disjoint supports and ids before building anything
        config = EquivariantCausalLMConfig(
            text_config=base.config, groups=[f.to_spec() for f in factors], strategy=strategy,
            aggregation=aggregation, branch_weighting=branch_weighting, base_model_name_or_path=name,
            base_model_revision=revision, max_rows=max_rows, share_identical_copies=share_identical_copies)
        return cls(config, base_model=base, tokenizer=tokenizer)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any):
        """Reload a saved wrapper: full saves load their weights, light saves reload the base by name."""
        config = kwargs.pop("config", None)
        hub_keys = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download")
        if not isinstance(config, EquivariantCausalLMConfig):
            config = EquivariantCausalLMConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: kwargs[k] for k in hub_keys if k in kwargs})
        tokenizer = _try_load_tokenizer(pretrained_model_name_or_path, kwargs)
        if config.save_base_weights:
            model = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        else:
            if not config.base_model_name_or_path:
                raise ValueError("this light checkpoint does not name its base model (base_model_name_or_path)")
            loading = {k: v for k, v in kwargs.items() if k not in ("revision", "subfolder")}
            base = AutoModelForCausalLM.from_pretrained(
                config.base_model_name_or_path, revision=config.base_model_revision, **loading)
            model = cls(config, base_model=base)
            model.eval()
        model.tokenizer = tokenizer
        return model

    # ------------------------------------------------------------------ group machinery
    @property
    def action(self) -> TokenPermutationAction:
        """The word-swap action, rebuilt lazily from the config (never stored as a buffer)."""
        if self._action is None:
            factors = [WordSwap.from_spec(g) for g in self.config.groups]
            self._action = TokenPermutationAction(factors, self._logits_width())
        return self._action

    @property
    def plan(self) -> Plan:
        """The copies the strategy runs for each input row."""
        if self._plan is None:
            self._plan = make_plan(self.action.factor_orders, self.config.strategy, self.config.branch_weighting)
        return self._plan

    def _logits_width(self) -> int:
        out = self.base.get_output_embeddings()
        return int(out.weight.shape[0]) if out is not None else int(self.config.text_config.vocab_size)

    @property
    def last_row_count(self) -> int:
        """Base-model rows used by the most recent forward call (after sharing identical copies)."""
        return self._layout.num_rows if self._layout is not None else 0

    @property
    def copies_per_row(self) -> int:
        """Base-model rows per input row before sharing: prod |Gi| (full), sum |Gi| (multi) or 1 (canonical)."""
        return self.plan.num_copies

    # ------------------------------------------------------------------ delegation
    def get_input_embeddings(self) -> torch.nn.Module:
        return self.base.get_input_embeddings()

    def set_input_embeddings(self, value: torch.nn.Module) -> None:
        self.base.set_input_embeddings(value)

    def get_output_embeddings(self) -> torch.nn.Module | None:
        return self.base.get_output_embeddings()

    def set_output_embeddings(self, value: torch.nn.Module) -> None:
        self.base.set_output_embeddings(value)

    def resize_token_embeddings(self, *args: Any, **kwargs: Any) -> torch.nn.Embedding:
        """Resize the base model's embeddings; new ids are fixed by every group element."""
        out = self.base.resize_token_embeddings(*args, **kwargs)
        self.config.text_config = self.base.config
        self._action, self._plan = None, None
        return out

    def _init_weights(self, module: torch.nn.Module) -> None:
        """The wrapper adds no parameters: every module is the base model's, so use the base's scheme (this also
        rebuilds the base's derived buffers, such as rotary tables, after a meta-device load)."""
        if module is not self and hasattr(self.base, "_init_weights"):
            self.base._init_weights(module)

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        labels: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        context_input_ids: torch.LongTensor | None = None,
        **kwargs: Any,
    ):
        """Equivariant logits for ``input_ids``; with ``labels``, the loss of the symmetrised distribution.

        ``context_input_ids`` is the whole sequence so far when ``input_ids`` holds only new tokens (``generate``
        passes it); the canonical strategy and copy sharing need it. Other keyword arguments (the cache under
        whatever name the installed transformers uses, ``use_cache``, ...) go to the base model unchanged.
        """
        if input_ids is None:
            raise ValueError("EquivariantModelForCausalLM acts on token ids: pass input_ids (inputs_embeds alone "
                             "cannot be transformed by a word-swap group)")
        if inputs_embeds is not None:
            raise ValueError("pass input_ids, not inputs_embeds: the group acts on token ids")
        cache = next((kwargs[k] for k in _CACHE_KWARGS if kwargs.get(k) is not None), None)
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if context_input_ids is None:
            if past and (self.config.strategy == "canonical" or self.config.share_identical_copies):
                raise ValueError("with a cache, pass context_input_ids (the whole sequence so far) so the wrapper "
                                 "can orient or share copies; generate() does this for you")
            context_input_ids = input_ids if not past else None
        context_mask = attention_mask if (attention_mask is not None and context_input_ids is not None
                                          and attention_mask.shape[-1] == context_input_ids.shape[-1]) else None
        copies = expand_token_copies(self.plan, self.action, context_input_ids, context_mask)

        share = self.config.share_identical_copies
        if share:
            layout = build_layout(self.action, copies, context_input_ids, input_ids.shape[-1])
            if past:
                self._fork_cache(cache, layout)
        else:
            layout = RowLayout.all_copies(copies.num_copies, input_ids.shape[0], input_ids.device)
        row_ids = layout.select_rows(transform_token_copies(self.action, input_ids, copies))
        per_row = {"attention_mask": attention_mask, "position_ids": position_ids, "token_type_ids": token_type_ids}
        row_kwargs = {k: layout.expand(v) for k, v in per_row.items() if v is not None}
        if logits_to_keep and self._base_accepts_logits_to_keep():
            kwargs["logits_to_keep"] = logits_to_keep
        kwargs.setdefault("return_dict", True)
        out = run_rows(self.base, row_ids, row_kwargs, kwargs, cache, self.config.max_rows)
        self._layout = layout
        # Softmax once per base row, then expand rows to copies: shared copies cost one row here too.
        row_values = to_aggregation_space(out.logits, self.config.aggregation)
        copy_values = layout.copy_values(row_values)  # [C, N, T, V]
        logits = aggregate_token_values(copy_values, self.action, copies, self.config.aggregation)
        out["logits"] = logits
        if labels is not None:
            shifted = logits[:, :-1, :].reshape(-1, logits.shape[-1])
            targets = labels[:, 1:].reshape(-1).to(logits.device)
            out["loss"] = F.cross_entropy(shifted.float(), targets, ignore_index=-100)
        return out

    def _base_accepts_logits_to_keep(self) -> bool:
        """Whether the base forward takes ``logits_to_keep`` (inspected once, not on every generation step)."""
        if self._accepts_logits_to_keep is None:
            self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(self.base.forward).parameters
        return self._accepts_logits_to_keep

    def _fork_cache(self, cache: Any, layout: RowLayout) -> None:
        """Copy-on-diverge: re-index the cache rows from the previous layout to this step's layout."""
        if layout.parent_rows is not None and not layout.parent_is_identity:
            cache.reorder_cache(layout.parent_rows.to(_cache_device(cache, layout.parent_rows)))

    # ------------------------------------------------------------------ generation hooks
    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs: Any) -> dict[str, Any]:
        """The base class's preparation, plus the whole sequence so far for orienting and sharing copies."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        inputs["context_input_ids"] = input_ids
        return inputs

    def _reorder_cache(self, cache: Any, beam_idx: torch.LongTensor) -> Any:
        """Beam search: move each input row's block of base rows along with its beam."""
        if self._layout is None:
            return cache
        index = self._layout.reorder_rows(beam_idx.to(self._layout.device))
        cache.reorder_cache(index.to(_cache_device(cache, index)))
        self._layout = self._layout.reordered(beam_idx.to(self._layout.device))
        return cache

    # ------------------------------------------------------------------ equivariance-check protocol
    def equivariance_group_order(self) -> int:
        return self.action.group.order

    def equivariance_element_label(self, element: int) -> str:
        parts = self.action.group.split(element)
        named = [f"{f.name}^{p}" for f, p in zip(self.action.factors, parts) if p]
        return "*".join(named) or "identity"

    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        moved = dict(inputs)
        ids = inputs["input_ids"]
        moved["input_ids"] = self.action.act(ids, self.action.element_parts(element).to(ids.device))
        return moved

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).logits

    def equivariance_transform_outputs(self, logits: torch.Tensor, element: int) -> torch.Tensor:
        """``(g.y)[w] = y[g^-1.w]``."""
        inverse = self.action.inverse_parts(self.action.element_parts(element))
        maps = self.action.vocabulary_maps(inverse, logits.device, logits.shape[-1])
        return logits[..., maps]

    # ------------------------------------------------------------------ saving
    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, save_base_weights: bool | None = None,
                        tokenizer: Any = None, **kwargs: Any) -> None:
        """Save the wrapper: full weights (default) or a light config that names the base model.

        The tokenizer (given here or at ``from_base``) and a model card are saved alongside, so
        ``pipeline("text-generation", model=path)`` works from the folder or a Hub repo.
        """
        full = self.config.save_base_weights if save_base_weights is None else bool(save_base_weights)
        os.makedirs(save_directory, exist_ok=True)
        original = self.config.save_base_weights
        self.config.save_base_weights = full
        try:
            if full:
                super().save_pretrained(save_directory, *args, **kwargs)
            else:
                if not self.config.base_model_name_or_path:
                    raise ValueError("a light save needs base_model_name_or_path (the Hub id or folder of the base "
                                     "model); wrap a model loaded by name, or save with save_base_weights=True")
                self.config.save_pretrained(save_directory)
                if self.generation_config is not None:
                    self.generation_config.save_pretrained(save_directory)
        finally:
            self.config.save_base_weights = original
        tokenizer = tokenizer if tokenizer is not None else self.tokenizer
        if tokenizer is not None:
            tokenizer.save_pretrained(save_directory)
        write_causal_lm_card(self, save_directory, full=full)


def _cache_device(cache: Any, fallback: torch.Tensor) -> torch.device:
    layers = getattr(cache, "layers", None)
    if layers:
        keys = getattr(layers[0], "keys", None)
        if torch.is_tensor(keys):
            return keys.device
    return fallback.device


def _try_load_tokenizer(path: str | os.PathLike, kwargs: dict[str, Any]) -> Any:
    """The tokenizer saved beside a wrapper, if any (``None`` when the folder has none)."""
    try:
        return AutoTokenizer.from_pretrained(
            path, **{k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs})
    except (OSError, ValueError, TypeError):
        return None
