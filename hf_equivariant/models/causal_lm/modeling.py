"""``EquivariantModelForCausalLM``: any Hugging Face causal LM made exactly equivariant to word-swap groups.

The wrapper hands the executor its plan, its action and a callable that runs the base model on base-model rows;
the executor transforms the copies, shares identical ones, streams the rows and returns the aggregated logits. The
wrapper keeps only what is specific to causal LMs: the KV cache (forked when copies diverge, reordered by beam
search, sliced for ``max_rows``), generation hooks, the ``labels`` loss and saving. It is a normal
``PreTrainedModel`` with ``GenerationMixin``: ``generate``, pipelines, ``Trainer``, ``save_pretrained`` and the Auto
classes all work on it.
"""

from __future__ import annotations

import copy
import inspect
import os
import threading
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationMixin
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import logging

from ...actions.registry import resolve_word_swaps, token_action
from ...actions.tokens import TokenPermutationAction, WordSwap
from ...aggregation import Aggregation
from ...executor import run_tokens
from ...plans import Plan, make_plan
from ...sharing import RowLayout
from ..base import EquivariantPreTrainedModel
from .cache import ChunkedCache, cache_device, find_cache
from .configuration import EquivariantCausalLMConfig

logger = logging.get_logger(__name__)

__all__ = ["EquivariantModelForCausalLM"]

_LAYOUT_ATTR = "_hf_equivariant_layout"  # the row layout travels with the cache it describes (per call, not per model)


class EquivariantModelForCausalLM(EquivariantPreTrainedModel, GenerationMixin):
    """A causal LM whose next-token distribution satisfies ``P(g.v | g.x) = P(v | x)`` for every group element."""

    config_class = EquivariantCausalLMConfig
    main_input_name = "input_ids"
    base_auto_class = AutoModelForCausalLM
    base_config_attr = "text_config"
    auto_classes = ("AutoModelForCausalLM",)
    group_input = "input_ids"
    output_kind = "equivariant"
    card_template = "causal_lm"
    card_pipeline_tag = "text-generation"
    card_tags = ("fairness", "counterfactual-fairness", "word-swap")

    def __init__(self, config: EquivariantCausalLMConfig, base_model: Any = None, tokenizer: Any = None) -> None:
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
        self._action_key: tuple | None = None
        self._plans: dict[tuple, Plan] = {}
        self._accepts_logits_to_keep: bool | None = None
        self._diagnostics = threading.local()
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(
        cls,
        model_or_name: Any,
        tokenizer: Any = None,
        groups: str | Sequence[str | WordSwap | dict] = ("gender",),
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
        ``WordSwap`` objects. Loading options such as ``dtype`` or ``device_map="auto"`` go to the base model's
        ``from_pretrained`` (only when the base is given by name).
        """
        base, name = cls.load_base(model_or_name, revision=revision, **loading_kwargs)
        if tokenizer is None and name is not None and isinstance(model_or_name, (str, os.PathLike)):
            hub = {k: loading_kwargs[k] for k in ("cache_dir", "token", "local_files_only") if k in loading_kwargs}
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision, **hub)
        factors = resolve_word_swaps(groups, tokenizer)
        width = _logits_width(base)
        if tokenizer is not None and len(tokenizer) > width:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's output layer has {width}: "
                             "they do not belong together (mismatched vocabularies)")
        token_action(factors, width)  # validates disjoint supports and ids before building anything
        config = EquivariantCausalLMConfig(
            text_config=base.config, groups=[f.to_spec() for f in factors], strategy=strategy,
            aggregation=aggregation, branch_weighting=branch_weighting, base_model_name_or_path=name,
            base_model_revision=revision, max_rows=max_rows, share_identical_copies=share_identical_copies)
        model = cls(config, base_model=base, tokenizer=tokenizer)
        model.track_base(revision, cache_dir=loading_kwargs.get("cache_dir"))
        return model

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """The tokenizer saved beside the weights (``None`` when the folder has none)."""
        self.tokenizer = _try_load_tokenizer(path, hub_kwargs)

    # ------------------------------------------------------------------ group machinery
    @property
    def action(self) -> TokenPermutationAction:
        """The word-swap action, rebuilt from the config whenever its groups or the logits width change."""
        key = (repr(self.config.groups), self._logits_width())
        if self._action is None or self._action_key != key:
            factors = [WordSwap.from_spec(g) for g in self.config.groups]
            self._action, self._action_key, self._plans = token_action(factors, key[1]), key, {}
        return self._action

    @property
    def plan(self) -> Plan:
        """The copies the configured strategy runs for each input row (follows edits of ``config.strategy``)."""
        action = self.action
        key = (self.config.strategy, self.config.branch_weighting)
        if key not in self._plans:
            self._plans[key] = make_plan(action.group, self.config.strategy, self.config.branch_weighting)
        return self._plans[key]

    def _logits_width(self) -> int:
        return _logits_width(self.base)

    @property
    def last_row_count(self) -> int:
        """Base-model rows used by this thread's most recent forward call (after sharing identical copies)."""
        return getattr(self._diagnostics, "rows", 0)

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
        return out

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
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> CausalLMOutputWithPast | tuple:
        """Equivariant logits for ``input_ids``; with ``labels``, the loss of the symmetrised distribution.

        ``context_input_ids`` is the whole sequence so far when ``input_ids`` holds only new tokens (``generate``
        passes it); orientation and copy sharing need it. Other keyword arguments (the cache under whatever name
        the installed transformers uses, ``use_cache``, ...) go to the base model unchanged.
        """
        if input_ids is None:
            raise ValueError("EquivariantModelForCausalLM acts on token ids: pass input_ids (inputs_embeds alone "
                             "cannot be transformed by a word-swap group)")
        if inputs_embeds is not None:
            raise ValueError("pass input_ids, not inputs_embeds: the group acts on token ids")
        cache_key, cache = find_cache(kwargs)
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if context_input_ids is None:
            if past and (self.config.strategy == "canonical" or self.config.share_identical_copies):
                raise ValueError("with a cache, pass context_input_ids (the whole sequence so far) so the wrapper "
                                 "can orient or share copies; generate() does this for you")
            context_input_ids = input_ids if not past else None
        context_mask = attention_mask if (attention_mask is not None and context_input_ids is not None
                                          and attention_mask.shape[-1] == context_input_ids.shape[-1]) else None
        if logits_to_keep and self._base_accepts_logits_to_keep():
            kwargs["logits_to_keep"] = logits_to_keep
        kwargs["return_dict"] = True
        max_rows = self.config.max_rows
        per_row = {"attention_mask": attention_mask, "position_ids": position_ids, "token_type_ids": token_type_ids}
        state: dict[str, Any] = {}

        def fork(layout: RowLayout) -> None:
            if cache is not None and layout.parent_rows is not None and not layout.parent_is_identity:
                cache.reorder_cache(layout.parent_rows.to(cache_device(cache, layout.parent_rows)))
            state["chunks"] = ChunkedCache(cache, max_rows is not None and layout.num_rows > max_rows)

        def call(start: int, stop: int, row_ids: torch.Tensor, layout: RowLayout) -> torch.Tensor:
            rows = layout.row_batch[start:stop]
            row_kwargs = {k: v[rows.to(v.device)] for k, v in per_row.items() if v is not None}
            chunk_kwargs = dict(kwargs)
            chunks: ChunkedCache = state["chunks"]
            if chunks.chunked and cache is not None:
                chunk_kwargs[cache_key] = chunks.for_rows(start, stop)
            out = self.base(input_ids=row_ids, **row_kwargs, **chunk_kwargs)
            chunks.returned(getattr(out, "past_key_values", None))
            state["last"] = out
            return out.logits

        run = run_tokens(self.plan, self.action, input_ids, call, Aggregation(self.config.aggregation),
                         context_ids=context_input_ids, context_mask=context_mask,
                         share=self.config.share_identical_copies, max_rows=max_rows, on_layout=fork)
        last = state["last"]
        new_cache = state["chunks"].result(getattr(last, "past_key_values", None))
        if new_cache is not None:
            try:
                setattr(new_cache, _LAYOUT_ATTR, run.layout)
            except AttributeError:  # legacy tuple caches cannot carry attributes: no beam reordering for them
                pass
        self._diagnostics.rows = run.layout.num_rows
        logits = run.logits
        loss = None
        if labels is not None:
            shifted = logits[:, :-1, :].reshape(-1, logits.shape[-1])
            targets = labels[:, 1:].reshape(-1).to(logits.device)
            loss = F.cross_entropy(shifted.float(), targets, ignore_index=-100)
        chunked = state["chunks"].chunked
        output = CausalLMOutputWithPast(  # hidden states and attentions are per base row (documented)
            loss=loss, logits=logits, past_key_values=new_cache,
            hidden_states=None if chunked else getattr(last, "hidden_states", None),
            attentions=None if chunked else getattr(last, "attentions", None))
        use_dict = return_dict if return_dict is not None else getattr(self.config, "use_return_dict", True)
        return output if use_dict else output.to_tuple()

    def _base_accepts_logits_to_keep(self) -> bool:
        """Whether the base forward takes ``logits_to_keep`` (inspected once, not on every generation step)."""
        if self._accepts_logits_to_keep is None:
            self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(self.base.forward).parameters
        return self._accepts_logits_to_keep

    # ------------------------------------------------------------------ generation hooks
    def prepare_inputs_for_generation(self, input_ids: torch.LongTensor, **kwargs: Any) -> dict[str, Any]:
        """The base class's preparation, plus the whole sequence so far for orienting and sharing copies."""
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        inputs["context_input_ids"] = input_ids
        return inputs

    def _reorder_cache(self, cache: Any, beam_idx: torch.LongTensor) -> Any:
        """Beam search: move each input row's block of base rows along with its beam."""
        layout: RowLayout | None = getattr(cache, _LAYOUT_ATTR, None)
        if layout is None:
            return cache
        index = layout.reorder_rows(beam_idx.to(layout.device))
        cache.reorder_cache(index.to(cache_device(cache, index)))
        setattr(cache, _LAYOUT_ATTR, layout.reordered(beam_idx.to(layout.device)))
        return cache

    # ------------------------------------------------------------------ equivariance-check protocol
    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).logits

    # ------------------------------------------------------------------ saving
    def card_group_tags(self) -> list[str]:
        return [f.name for f in self.action.factors]

    def card_context(self, repo: str) -> dict[str, Any]:
        """Values for ``model_cards/causal_lm.md``."""
        config, action = self.config, self.action
        rows = ["| factor | order | word sets | tokens moved |", "|---|---|---|---|"]
        for factor in action.factors:
            sets = "; ".join("/".join(s) for s in factor.words)
            rows.append(f"| {factor.name} | {factor.order} | {sets} | {len(factor.support)} |")
        prod, total = action.group.order, sum(action.factor_orders)
        base = config.base_model_name_or_path
        checkpoint = ("Full: the base weights are included." if config.save_base_weights else
                      f"Light: only the wrapper's config; the base model `{self.base_display_name(base or '')}` "
                      f"{'(commit ' + config.base_model_revision + ') ' if config.base_model_revision else ''}"
                      "is loaded at load time.")
        factors = [f.name for f in action.factors]
        return {
            "title": f"{self.base_display_name('Causal LM')}, equivariant to {' x '.join(factors)}",
            "base_model_name": self.base_display_name(""), "repo": repo,
            "example_prompt": "The woman worked as a", "groups_table": "\n".join(rows), "group_order": prod,
            "factor_orders": " x ".join(map(str, action.factor_orders)), "strategy": config.strategy,
            "aggregation": config.aggregation, "branch_weighting": config.branch_weighting,
            "rows_per_token": {"full": prod, "multi": total}.get(config.strategy, 1),
            "sharing": "on" if config.share_identical_copies else "off", "checkpoint": checkpoint,
        }


def _logits_width(base: Any) -> int:
    out = base.get_output_embeddings()
    return int(out.weight.shape[0]) if out is not None else int(base.config.vocab_size)


def _try_load_tokenizer(path: str | os.PathLike, kwargs: dict[str, Any]) -> Any:
    """The tokenizer saved beside a wrapper, if any (``None`` when the folder has none)."""
    try:
        return AutoTokenizer.from_pretrained(
            path, **{k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs})
    except (OSError, ValueError, TypeError):
        return None
