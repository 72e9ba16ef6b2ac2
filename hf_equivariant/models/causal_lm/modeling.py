"""``EquivariantModelForCausalLM``: any Hugging Face causal LM made exactly equivariant to word-swap groups.

The wrapper hands the executor its plan, its action and a callable that runs the base model on base-model rows;
the executor transforms the copies, shares identical ones, streams the rows and returns the aggregated logits. The
wrapper keeps only what is specific to causal LMs: the KV cache (forked when copies diverge, reordered by beam
search, sliced for ``max_rows``), generation hooks, the ``labels`` loss and saving. It is a normal
``PreTrainedModel`` with ``GenerationMixin``: ``generate``, pipelines, ``Trainer``, ``save_pretrained`` and the Auto
classes all work on it.
"""

from __future__ import annotations

import inspect
import os
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
from ...executor import run_tokens, token_prefix_length
from ...plans import Plan, make_plan
from ...sharing import RowLayout
from ..base import EmbeddingDelegationMixin, EquivariantPreTrainedModel
from .cache import ChunkedCache, cache_device, empty_cache, find_cache
from .configuration import EquivariantCausalLMConfig

logger = logging.get_logger(__name__)

__all__ = ["EquivariantModelForCausalLM"]

_LAYOUT_ATTR = "_hf_equivariant_layout"  # the row layout travels with the cache it describes (per call, not per model)
_ROWS_ATTR = "_hf_equivariant_rows"  # the transformed sequences whose states the cache holds
_UNKNOWN = object()


def _row_index(held: torch.Tensor, wanted: torch.Tensor) -> torch.Tensor | None:
    """Index in ``held`` ``[H, L]`` of each row of ``wanted`` ``[W, L]``, or ``None`` if one is missing (one sort of
    both sets of rows, not an all-pairs comparison)."""
    if held.shape[1] != wanted.shape[1]:
        return None
    unique, inverse = torch.unique(torch.cat([held, wanted]), dim=0, return_inverse=True)
    lookup = torch.full((unique.shape[0],), -1, dtype=torch.long, device=held.device)
    lookup[inverse[: held.shape[0]]] = torch.arange(held.shape[0], device=held.device)
    found = lookup[inverse[held.shape[0]:]]
    return None if bool((found < 0).any()) else found


def _held_count(cache: Any, held: Any) -> int:
    return int(held.shape[0]) if torch.is_tensor(held) else -1


def _cut(t: torch.Tensor | None, stop: int) -> torch.Tensor | None:
    return None if t is None else t[..., :stop]


def _tail(t: torch.Tensor | None, start: int) -> torch.Tensor | None:
    return None if t is None else t[..., start:]


def _forward_params(model: Any) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


def _new_cache(base: Any) -> Any:
    """An empty DynamicCache for the base model (its config decides the layer types where it matters)."""
    from transformers import DynamicCache

    try:
        return DynamicCache(config=base.config)
    except TypeError:  # transformers 4.x
        return DynamicCache()


class EquivariantModelForCausalLM(EmbeddingDelegationMixin, EquivariantPreTrainedModel, GenerationMixin):
    """A causal LM whose next-token distribution satisfies ``P(g.v | g.x) = P(v | x)`` for every group element."""

    config_class = EquivariantCausalLMConfig
    main_input_name = "input_ids"
    base_auto_class = AutoModelForCausalLM
    auto_classes = ("AutoModelForCausalLM",)
    group_input = "input_ids"
    output_kind = "equivariant"
    card_template = "causal_lm"
    card_pipeline_tag = "text-generation"
    card_tags = ("fairness", "counterfactual-fairness", "word-swap")

    def __init__(self, config: EquivariantCausalLMConfig, base_model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(config)
        self.attach_base(base_model, tokenizer)
        self._action: TokenPermutationAction | None = None
        self._action_key: tuple | None = None
        self._plans: dict[tuple, Plan] = {}
        self._accepts_logits_to_keep: bool | None = None
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_base(
        cls,
        model_or_name: Any,
        tokenizer: Any = None,
        groups: str | Sequence[str | WordSwap | dict] = ("gender",),
        strategy: str = "auto",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        max_rows: int | None = None,
        share_identical_copies: bool = True,
        canonicalization: str = "neutral",
        share_common_prefix: bool = True,
        revision: str | None = None,
        **loading_kwargs: Any,
    ) -> EquivariantModelForCausalLM:
        """Wrap a base causal LM (an instance, a Hub id or a local folder).

        ``groups`` takes built-in names (``"gender"``, ``"race"``, ``"religion"``, ``"sexual_orientation"``) and
        ``WordSwap`` objects. ``strategy="auto"`` (the default) gives the exact orbit average wherever it costs no
        more than anchor-free multi. Loading options such as ``dtype`` or ``device_map="auto"`` go to the base
        model's ``from_pretrained`` (only when the base is given by name).
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
            base_model_revision=revision, max_rows=max_rows, share_identical_copies=share_identical_copies,
            canonicalization=canonicalization, share_common_prefix=share_common_prefix)
        model = cls(config, base_model=base, tokenizer=tokenizer)
        model.track_base(revision, cache_dir=loading_kwargs.get("cache_dir"))
        return model

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """The tokenizer saved beside the weights (``None`` when the folder has none); a saved config's words must be
        what its token ids swap for that tokenizer (hand-edited configs)."""
        self.tokenizer = _try_load_tokenizer(path, hub_kwargs)
        if self.tokenizer is not None:
            for spec in self.config.groups:
                WordSwap.from_spec(spec).verify(self.tokenizer)

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
        key = (self.config.strategy, self.config.branch_weighting, self.config.canonicalization)
        if key not in self._plans:
            self._plans[key] = make_plan(action.group, *key[:2], canonicalization=key[2])
        return self._plans[key]

    def _logits_width(self) -> int:
        return _logits_width(self.base)

    @property
    def last_row_count(self) -> int:
        """Base-model rows used by this thread's most recent forward call (after sharing identical copies)."""
        return getattr(self._diagnostics, "rows", 0)

    @property
    def copies_per_row(self) -> int:
        """Base-model rows per input row before sharing: prod |Gi| (full), sum |Gi| (multi) or 1 (canonical);
        ``auto`` runs at most max(prod |Gi| over the factors present, sum |Gi| + 1) of its copies after sharing."""
        plan = self.plan
        return int((plan.branch < len(plan.factor_orders)).sum()) if plan.auto else plan.num_copies

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
        if not torch.is_tensor(input_ids) or input_ids.dim() not in (1, 2):
            shape = tuple(input_ids.shape) if torch.is_tensor(input_ids) else type(input_ids).__name__
            raise ValueError(f"input_ids must be [batch, length] (or [length] for one sequence), got {shape}")
        if input_ids.dim() == 1:  # one sequence, as transformers' models accept it
            input_ids = input_ids[None]
            attention_mask = attention_mask[None] if attention_mask is not None and attention_mask.dim() == 1 \
                else attention_mask
            position_ids = position_ids[None] if position_ids is not None and position_ids.dim() == 1 else position_ids
            labels = labels[None] if labels is not None and labels.dim() == 1 else labels
            if context_input_ids is not None and context_input_ids.dim() == 1:
                context_input_ids = context_input_ids[None]
        self.action.check_ids(input_ids)
        cache_key, cache = find_cache(kwargs)
        past = int(cache.get_seq_length()) if cache is not None and hasattr(cache, "get_seq_length") else 0
        if context_input_ids is None:
            if past and (self.config.strategy in ("canonical", "auto") or self.config.share_identical_copies
                         or self.config.canonicalization == "neutral"):
                raise ValueError("with a cache, pass context_input_ids (the whole sequence so far) so the wrapper "
                                 "can orient or share copies; generate() does this for you")
            context_input_ids = input_ids if not past else None
        if logits_to_keep and self._base_accepts_logits_to_keep():
            kwargs["logits_to_keep"] = logits_to_keep
        kwargs["return_dict"] = True
        wants_cache = bool(kwargs.get("use_cache", getattr(self.config.text_config, "use_cache", True)))
        split = 0
        if (not past and self.config.share_common_prefix and self.config.share_identical_copies
                and self.plan.num_copies > 1 and input_ids.shape[-1] > 1 and not logits_to_keep):
            split = token_prefix_length(self.plan, self.action, input_ids, attention_mask)
            split = split if 0 < split < input_ids.shape[-1] else 0
        if split:  # run the shared prefix once (one row per input), then fork its cache at the first difference
            if cache is None:
                cache_key = cache_key or ("cache" if "cache" in _forward_params(self.base) else "past_key_values")
                cache = _new_cache(self.base)
                kwargs[cache_key] = cache
            kwargs["use_cache"] = True
            head = self._run(input_ids[:, :split], input_ids[:, :split], _cut(attention_mask, split),
                             _cut(position_ids, split), _cut(token_type_ids, split), kwargs, cache, cache_key)
            tail = self._run(input_ids[:, split:], input_ids, attention_mask, _tail(position_ids, split),
                             _tail(token_type_ids, split), kwargs, head[1], cache_key)
            logits, new_cache, extras = torch.cat([head[0], tail[0]], dim=1), tail[1], {}
            if not wants_cache:
                new_cache = None
        else:
            logits, new_cache, extras = self._run(input_ids, context_input_ids, attention_mask, position_ids,
                                                  token_type_ids, kwargs, cache, cache_key)
        loss = None
        if labels is not None:
            shifted = logits[:, :-1, :].reshape(-1, logits.shape[-1])
            targets = labels[:, 1:].reshape(-1).to(logits.device)
            loss = F.cross_entropy(shifted.float(), targets, ignore_index=-100)
        output = CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=new_cache, **extras)
        use_dict = return_dict if return_dict is not None else getattr(self.config, "use_return_dict", True)
        return output if use_dict else output.to_tuple()

    def _run(self, input_ids: torch.Tensor, context_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
             position_ids: torch.Tensor | None, token_type_ids: torch.Tensor | None, kwargs: dict[str, Any],
             cache: Any, cache_key: str | None) -> tuple[torch.Tensor, Any, dict[str, Any]]:
        """One pass of the executor over ``input_ids`` (the last tokens of ``context_ids``), with this cache."""
        max_rows = self.config.max_rows
        context_mask = attention_mask if (attention_mask is not None and context_ids is not None
                                          and attention_mask.shape[-1] == context_ids.shape[-1]) else None
        per_row = {"attention_mask": attention_mask, "position_ids": position_ids, "token_type_ids": token_type_ids}
        state: dict[str, Any] = {"whole": False}
        action = self.action

        def fork(layout: RowLayout) -> bool:
            """Fork the cache to this layout's rows; True if the cache does not hold the prefix they continue."""
            if cache is not None and layout.parent_rows is not None and not state["whole"]:
                held = getattr(cache, _ROWS_ATTR, _UNKNOWN)
                parents = layout.parent_rows
                if held is not _UNKNOWN:
                    found = None if held is None else _row_index(held.to(layout.device), layout.parent_sequences)
                    if found is None:
                        empty_cache(cache)  # the strategy changed the copies: recompute the whole context once
                        state["whole"] = True
                        return True
                    parents = found[parents]  # the cached rows these rows continue (a subset may be dropped)
                if not (parents.numel() == layout.parent_count == _held_count(cache, held)
                        and torch.equal(parents, torch.arange(parents.numel(), device=parents.device))):
                    cache.reorder_cache(parents.to(cache_device(cache, parents)))
            state["chunks"] = ChunkedCache(cache, max_rows is not None and layout.num_rows > max_rows)
            return False

        def call(start: int, stop: int, row_ids: torch.Tensor, layout: RowLayout) -> torch.Tensor:
            rows = layout.row_batch[start:stop]
            values = dict(per_row)
            if state["whole"] and position_ids is not None and attention_mask is not None:
                values["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp_min(0)
            row_kwargs = {k: v[rows.to(v.device)] for k, v in values.items() if v is not None}
            chunk_kwargs = dict(kwargs)
            chunks: ChunkedCache = state["chunks"]
            if chunks.chunked and cache is not None:
                chunk_kwargs[cache_key] = chunks.for_rows(start, stop)
            if int(row_ids.max()) >= action.vocab_size:  # neutral inputs: feed embeddings
                out = self.base(inputs_embeds=self._embed(row_ids), **row_kwargs, **chunk_kwargs)
            else:
                out = self.base(input_ids=row_ids, **row_kwargs, **chunk_kwargs)
            chunks.returned(getattr(out, "past_key_values", None))
            state["last"] = out
            return out.logits

        run = run_tokens(self.plan, action, input_ids, call, Aggregation(self.config.aggregation),
                         context_ids=context_ids, context_mask=context_mask,
                         share=self.config.share_identical_copies, max_rows=max_rows, on_layout=fork)
        last = state["last"]
        new_cache = state["chunks"].result(getattr(last, "past_key_values", None))
        if new_cache is not None:
            try:
                setattr(new_cache, _LAYOUT_ATTR, run.layout)
                setattr(new_cache, _ROWS_ATTR, run.layout.sequences)
            except AttributeError:  # legacy tuple caches cannot carry attributes: no beam reordering for them
                pass
        self._diagnostics.rows = run.layout.num_rows
        chunked = state["chunks"].chunked
        extras = {"hidden_states": None if chunked else getattr(last, "hidden_states", None),  # per base row
                  "attentions": None if chunked else getattr(last, "attentions", None)}
        return run.logits, new_cache, extras

    def _embed(self, row_ids: torch.Tensor) -> torch.Tensor:
        """Input embeddings of rows that contain neutral ids (``vocab_size + k``: the mean embedding of cycle k)."""
        table = self.base.get_input_embeddings().weight
        vocab = self.action.vocab_size
        neutral = self.action.neutral_embeddings(table)
        real = table[row_ids.clamp(max=min(vocab, table.shape[0]) - 1)]
        fake = neutral[(row_ids - vocab).clamp(min=0, max=neutral.shape[0] - 1)]
        return torch.where((row_ids >= vocab)[..., None], fake, real)

    def _base_accepts_logits_to_keep(self) -> bool:
        """Whether the base forward takes ``logits_to_keep`` (inspected once, not on every generation step)."""
        if self._accepts_logits_to_keep is None:
            self._accepts_logits_to_keep = "logits_to_keep" in inspect.signature(self.base.forward).parameters
        return self._accepts_logits_to_keep

    # ------------------------------------------------------------------ generation hooks
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """``GenerationMixin.generate`` on token ids (the group acts on ids, so ``inputs_embeds`` are refused)."""
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("generate() needs input_ids: a word-swap group acts on token ids, not on "
                             "inputs_embeds; tokenize the prompt and pass input_ids")
        return super().generate(*args, **kwargs)

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
        moved = layout.reordered(beam_idx.to(layout.device))
        setattr(cache, _LAYOUT_ATTR, moved)
        setattr(cache, _ROWS_ATTR, moved.sequences)
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
            "rows_per_token": {"full": prod, "multi": total,
                               "auto": f"at most {prod} (the orbit average) or {total} (anchor-free design 2)"}.get(
                                   config.strategy, 1),
            "strategy_note": _STRATEGY_NOTES.get((config.strategy, config.canonicalization),
                                                 _STRATEGY_NOTES.get((config.strategy, None), "")),
            "sharing": "on" if config.share_identical_copies else "off", "checkpoint": checkpoint,
        }


_STRATEGY_NOTES = {
    ("auto", None): "The exact orbit average of the swapped prompts wherever it costs no more than anchor-free design 2 "
                    "(always with at most one attribute in the text), else anchor-free design 2; chosen per position "
                    "from the attributes present so far, so exact and causal.",
    ("full", None): "The exact orbit average: every demographic variant of the prompt weighs the same.",
    ("multi", "neutral"): "Anchor-free design 2: other factors' words replaced by the mean embedding of their orbit, "
                          "branch weights by which factors occur, each factor's split routed to its own branch.",
    ("multi", "representative"): "The paper's design 2: other factors' words replaced by the first word of their set, "
                                 "so every variant is answered like that representative's (the anchor effect).",
    ("canonical", None): "One copy oriented by the first word of each factor: exact, but every variant is answered like "
                         "the first word's variant (the anchor effect).",
    ("none", None): "The base model itself (for comparisons).",
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
