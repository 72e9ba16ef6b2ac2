"""``EquivariantModelForSequenceClassification``: any Hugging Face text classifier made exactly invariant to span
swaps (multi-word, multi-token identity terms), so that swapping "African American" for "European American" or
"father-in-law" for "mother-in-law" cannot change its logits.

The wrapper finds the spans with its tokenizer (held like the causal-LM wrapper's and saved with it), asks
:mod:`hf_equivariant.row_plans` for the copies of each input, and hands the executor
(:func:`~hf_equivariant.executor.run_sequences`) a callable that runs the base classifier on rows. It is a normal
``PreTrainedModel``: pipelines, ``Trainer``, ``save_pretrained`` and the Auto classes work on it.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging

from ...actions.registry import resolve_span_swaps, span_action
from ...actions.spans import SpanSwap, SpanSwapAction
from ...aggregation import Aggregation
from ...executor import SequenceRun, run_sequences
from ...row_plans import RowCopies, nominal_copies, row_copies
from ..base import EmbeddingDelegationMixin, EquivariantPreTrainedModel
from .configuration import EquivariantSequenceClassificationConfig, output_link

logger = logging.get_logger(__name__)

__all__ = ["EquivariantModelForSequenceClassification", "SpanInvariantModel"]

GroupsArg = str | SpanSwap | dict | Sequence[str | SpanSwap | dict]
_HUB_KEYS = ("revision", "cache_dir", "token", "local_files_only", "subfolder", "force_download")


class SpanInvariantModel(EmbeddingDelegationMixin, EquivariantPreTrainedModel):
    """What the span-swap invariant models share: the tokenizer, the action, the per-input copies and the run.

    Subclasses set ``config_class``, ``base_auto_class`` and implement ``forward`` with :meth:`run_invariant`.
    """


    def card_group_tags(self) -> list[str]:
        return list(dict.fromkeys(self.config.group_names))

    def card_context(self, repo: str) -> dict[str, Any]:
        """Values for ``model_cards/sections.md`` (from the family's sections)."""
        title, summary, usage, sections = self.model_card_sections()
        body = "\n\n".join(f"## {heading}\n\n{text.strip()}" for heading, text in sections)
        return {"title": title, "summary": summary, "usage": usage.replace("<this repo or folder>", repo).strip(),
                "sections": body, "repo": repo}

    main_input_name = "input_ids"
    group_input = "input_ids"
    output_kind = "invariant"
    #: Trainer must not pass ``num_items_in_batch``: the loss is a mean over the batch.
    accepts_loss_kwargs = False
    #: Keyword arguments never passed on to the base model.
    _dropped_kwargs: ClassVar[tuple[str, ...]] = ("num_items_in_batch", "output_attentions", "output_hidden_states",
                                                  "return_dict")

    def __init__(self, config: Any, base_model: Any = None, tokenizer: Any = None) -> None:
        super().__init__(config)
        self.attach_base(base_model, tokenizer)
        self._action: SpanSwapAction | None = None
        self._action_key: tuple | None = None
        self._base_params: frozenset[str] | None = None
        self.post_init()

    # ------------------------------------------------------------------ construction
    @classmethod
    def _wrap(cls, model_or_name: Any, tokenizer: Any, groups: GroupsArg, revision: str | None,
              loading_kwargs: dict[str, Any], **settings: Any) -> SpanInvariantModel:
        base, name = cls.load_base(model_or_name, revision=revision, **loading_kwargs)
        if tokenizer is None and name is not None and isinstance(model_or_name, (str, os.PathLike)):
            tokenizer = AutoTokenizer.from_pretrained(name, revision=revision)
        factors = resolve_span_swaps(groups)
        span_action(factors, tokenizer)  # overlaps, ambiguous longest matches, unsupported tokenizers: fail here
        embeddings = base.get_input_embeddings()
        width = getattr(embeddings, "num_embeddings", None)
        if width is not None and len(tokenizer) > width:
            raise ValueError(f"the tokenizer has {len(tokenizer)} tokens but the model's embeddings have {width}: "
                             "they do not belong together (mismatched vocabularies)")
        if getattr(base.config, "pad_token_id", None) is None:
            if tokenizer.pad_token_id is None:
                raise ValueError("copies of a text differ in length and are padded, but neither the tokenizer nor "
                                 "the model has a pad token: set tokenizer.pad_token (e.g. to its eos_token)")
            base.config.pad_token_id = tokenizer.pad_token_id  # the base needs it to find the end of padded rows
            logger.info("set the base model's pad_token_id to the tokenizer's (%d)", tokenizer.pad_token_id)
        config = cls.config_class(base_config=base.config, groups=[f.to_spec() for f in factors],
                                  base_model_name_or_path=name, base_model_revision=revision, **settings)
        model = cls(config, base_model=base, tokenizer=tokenizer)
        model.track_base(revision, cache_dir=loading_kwargs.get("cache_dir"))
        return model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *model_args: Any, **kwargs: Any):
        """Reload a saved wrapper (see the shared base) and the tokenizer saved beside it, or ``tokenizer=``."""
        tokenizer = kwargs.pop("tokenizer", None)
        model = super().from_pretrained(pretrained_model_name_or_path, *model_args, **kwargs)
        if tokenizer is not None:
            model.tokenizer = tokenizer
        return model

    def attach_loaded_components(self, path: str | os.PathLike, hub_kwargs: dict[str, Any]) -> None:
        """The tokenizer saved beside the weights (``None`` when the folder has none)."""
        self.tokenizer = _try_load_tokenizer(path, hub_kwargs)

    # ------------------------------------------------------------------ group machinery
    @property
    def action(self) -> SpanSwapAction:
        """The span-swap action on the held tokenizer, rebuilt when the groups or the tokenizer change."""
        if self.tokenizer is None:
            raise ValueError(f"{type(self).__name__} needs its tokenizer to find spans in token ids: set "
                             "model.tokenizer = AutoTokenizer.from_pretrained(<the wrapper's folder or base model>)")
        key = (json.dumps(self.config.groups, sort_keys=True), id(self.tokenizer))
        if self._action is None or self._action_key != key:
            factors = [SpanSwap.from_spec(g) for g in self.config.groups]
            self._action, self._action_key = span_action(factors, self.tokenizer), key
        return self._action

    @property
    def copies_per_row(self) -> int:
        """Most copies an input runs before de-duplication: prod |Gi| (full), sum |Gi| (multi), 1 (canonical,
        none); ``auto`` at most sum |Gi|. Per-input counts of the last call: :attr:`last_copy_counts`."""
        orders = [len(g["sets"][0]) for g in self.config.groups]
        return nominal_copies(orders, self.config.strategy, self.config.canonicalization)

    @property
    def last_row_count(self) -> int:
        """Base-model rows of this thread's most recent forward call (after de-duplication)."""
        run: SequenceRun | None = getattr(self._diagnostics, "run", None)
        return 0 if run is None else run.num_rows

    @property
    def last_copy_counts(self) -> torch.Tensor | None:
        """``[N]`` copies each input of the last call asked for (before de-duplication)."""
        run: SequenceRun | None = getattr(self._diagnostics, "run", None)
        return None if run is None else run.copies

    @property
    def last_row_counts(self) -> torch.Tensor | None:
        """``[N]`` base-model rows each input of the last call used (after de-duplication)."""
        run: SequenceRun | None = getattr(self._diagnostics, "run", None)
        return None if run is None else run.rows

    def row_copies(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
                   ) -> tuple[RowCopies, torch.Tensor]:
        """The copies the configured strategy runs for each input, and which factors each input contains."""
        action = self.action
        present, first = action.factor_matches(input_ids, attention_mask)
        copies = row_copies(action.factor_orders, self.config.strategy, present, first,
                            self.config.branch_weighting, self.config.canonicalization)
        return copies, present

    # ------------------------------------------------------------------ running
    def _accepted(self) -> frozenset[str]:
        if self._base_params is None:
            params = inspect.signature(self.base.forward).parameters
            self._base_params = frozenset(params)
        return self._base_params

    def _inputs(self, input_ids: Any, attention_mask: Any, token_type_ids: Any, position_ids: Any,
                inputs_embeds: Any) -> dict[str, torch.Tensor]:
        if inputs_embeds is not None or input_ids is None:
            raise ValueError(f"{type(self).__name__} acts on token ids: pass input_ids (inputs_embeds cannot be "
                             "searched for identity terms)")
        if position_ids is not None:
            raise ValueError("position_ids cannot follow spans that change length; leave them out (each copy is "
                             "re-padded and positioned from its own start)")
        if not torch.is_tensor(input_ids) or input_ids.dim() not in (1, 2) or input_ids.shape[-1] == 0:
            shape = tuple(input_ids.shape) if torch.is_tensor(input_ids) else type(input_ids).__name__
            raise ValueError(f"input_ids must be a [batch, length] tensor (or [length] for one text), got {shape}")
        inputs = {"input_ids": input_ids if input_ids.dim() == 2 else input_ids[None]}
        if inputs["input_ids"].shape[0] == 0:
            raise ValueError("input_ids has no rows")
        for key, value in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if value is not None:
                inputs[key] = value if value.dim() == 2 else value[None]
        if "token_type_ids" in inputs and "token_type_ids" not in self._accepted():
            del inputs["token_type_ids"]  # DistilBERT-style bases take none; the tokenizer may still send them
        return inputs

    def run_invariant(self, inputs: dict[str, torch.Tensor], outputs: Any, aggregation: Aggregation,
                      base_kwargs: dict[str, Any]) -> SequenceRun:
        """Run the base on every copy of ``inputs``; ``outputs(base_output, batch)`` picks the tensor to average."""
        copies, present = self.row_copies(inputs["input_ids"], inputs.get("attention_mask"))
        extra = {k: v for k, v in base_kwargs.items() if k not in self._dropped_kwargs}

        def call(batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return outputs(self.base(**batch, **extra, return_dict=True), batch)

        pad = getattr(self.base.config, "pad_token_id", None)
        run = run_sequences(self.action, copies, inputs, call, aggregation, present=present,
                            deduplicate=self.config.deduplicate, max_rows=self.config.max_rows, pad_token_id=pad)
        self._diagnostics.run = run
        return run

    # ------------------------------------------------------------------ check_equivariance protocol
    def equivariance_transform_inputs(self, inputs: dict[str, Any], element: int) -> dict[str, Any]:
        """``g . x`` for a tokenizer batch: spans change length, so every row is re-padded."""
        return self.action.transform_inputs(inputs, int(element))

    # ------------------------------------------------------------------ model card helpers
    def _groups_table(self) -> str:
        rows = ["| factor | order | sets (members / neutral replacement) |", "|---|---|---|"]
        for spec in self.config.groups:
            neutral = spec.get("neutral") or [""] * len(spec["sets"])
            sets = "; ".join("/".join(s) + f" → {n or '(deleted)'}" for s, n in zip(spec["sets"], neutral))
            rows.append(f"| {spec['name']} | {spec['order']} | {sets} |")
        return "\n".join(rows)

    def _cost_text(self) -> str:
        orders = [len(g["sets"][0]) for g in self.config.groups]
        config = self.config
        prod, total = 1, sum(orders)
        for o in orders:
            prod *= o
        canon = f", canonicalization `{config.canonicalization}`" if config.strategy in ("multi", "auto") else ""
        return (f"strategy `{config.strategy}`{canon}, aggregation `{config.aggregation}`, branch weighting "
                f"`{config.branch_weighting}`. Base-model rows per text: at most {self.copies_per_row} before "
                f"de-duplication (full equitune: {prod}; design 2: {total}); identical transformed texts run once "
                f"({'on' if config.deduplicate else 'off'}), so a text without identity terms costs one row.")

    def _checkpoint_text(self) -> str:
        base = self.config.base_model_name_or_path
        return ("Save mode: full (base weights included)." if self.config.save_base_weights else
                f"Save mode: light (config only; the base model is loaded from `{base}` at load time).")


class EquivariantModelForSequenceClassification(SpanInvariantModel):
    """A text classifier whose logits are identical for every span-swap group element applied to the text."""

    config_class = EquivariantSequenceClassificationConfig
    base_auto_class = AutoModelForSequenceClassification
    card_template = "sections"
    auto_classes = ("AutoModelForSequenceClassification",)
    card_pipeline_tag = "text-classification"
    card_tags = ("fairness", "text-classification", "counterfactual-fairness")

    def __init__(self, config: EquivariantSequenceClassificationConfig, base_model: Any = None,
                 tokenizer: Any = None) -> None:
        super().__init__(config, base_model=base_model, tokenizer=tokenizer)
        self.num_labels = config.num_labels

    @classmethod
    def from_base(
        cls,
        model_or_name: Any,
        tokenizer: Any = None,
        groups: GroupsArg = ("race_ethnicity", "gender_extended"),
        strategy: str = "auto",
        canonicalization: str = "neutral",
        aggregation: str | None = None,
        branch_weighting: str = "size",
        max_rows: int | None = None,
        deduplicate: bool = True,
        revision: str | None = None,
        **loading_kwargs: Any,
    ) -> EquivariantModelForSequenceClassification:
        """Wrap a base ``AutoModelForSequenceClassification`` (an instance, a Hub id or a local folder).

        ``groups`` takes span-set names (``"race_ethnicity"``, ``"gender_identity"``, ``"gender_extended"``,
        ``"disability"``, ``"age"``; the single-word sets work too), ``SpanSwap`` objects and saved specs.
        ``aggregation`` defaults to ``"mean_prob"`` (``"mean_logits"`` for a regression head). Overlapping or
        ambiguous factors raise a ``ValueError`` here, naming the members.
        """
        if aggregation is None:
            base_config = getattr(model_or_name, "config", None)
            regression = base_config is not None and output_link(
                getattr(base_config, "problem_type", None), getattr(base_config, "num_labels", 2)) == "identity"
            aggregation = "mean_logits" if regression else "mean_prob"
        return cls._wrap(model_or_name, tokenizer, groups, revision, loading_kwargs, strategy=strategy,
                         canonicalization=canonicalization, aggregation=aggregation,
                         branch_weighting=branch_weighting, max_rows=max_rows, deduplicate=deduplicate)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput | tuple:
        """Invariant logits ``[batch, num_labels]``; with ``labels``, the loss on them.

        Logits live in aggregation space (for ``mean_prob``: log of the mean probability, or for multi-label the
        logit of the mean probability), so the softmax (sigmoid) a pipeline applies gives the aggregate exactly.
        Hidden states and attentions are per base row and are not returned.
        """
        inputs = self._inputs(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
        link = self.config.link
        run = self.run_invariant(inputs, lambda out, batch: out.logits, Aggregation(self.config.aggregation, link),
                                 kwargs)
        logits = run.output
        loss = None if labels is None else _classification_loss(logits, labels, link, self.num_labels)
        output = SequenceClassifierOutput(loss=loss, logits=logits)
        use_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        return output if use_dict else output.to_tuple()

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).logits

    def model_card_sections(self) -> tuple[str, str, str, list[tuple[str, str]]]:
        labels = ", ".join(str(v) for _, v in sorted(self.config.id2label.items()))
        usage = """import hf_equivariant  # registers the Auto classes
from transformers import pipeline

clf = pipeline("text-classification", model="<this repo or folder>")
clf(["The African American woman was rude.", "The European American man was rude."])  # identical scores"""
        sections = [
            ("Groups", self._groups_table()),
            ("Guarantee", "For every element g of the product group and every tokenized text x, the logits of g.x "
                          "equal those of x (up to float rounding): swapping the identity terms above (in the case "
                          "forms and contexts this tokenizer can swap, see `SpanSwapAction.unswappable()`) cannot "
                          f"change the prediction. Labels: {labels}. Words outside the sets, paraphrases and "
                          "proxies (names, dialect) are not covered."),
            ("Strategy and cost", self._cost_text()),
            ("Checkpoint", self._checkpoint_text()),
        ]
        base = self.config.base_model_name_or_path
        title = f"Counterfactually fair {base or 'text classifier'} ({', '.join(self.config.group_names)})"
        summary = ("A text classifier wrapped by hf_equivariant so that its logits are exactly invariant to swapping "
                   "identity terms (multi-word and multi-token spans): multi-group equitune, Baltaji, Basu & "
                   "Varshney, TMLR 2024, with an anchor-free design 2.")
        return title, summary, usage, sections


def _classification_loss(logits: torch.Tensor, labels: torch.Tensor, link: str, num_labels: int) -> torch.Tensor:
    """transformers' sequence-classification losses, chosen by the output link."""
    labels = labels.to(logits.device)
    if link == "identity":
        return F.mse_loss(logits.squeeze(-1), labels.squeeze(-1).to(logits.dtype)) if num_labels == 1 else \
            F.mse_loss(logits, labels.to(logits.dtype))
    if link == "sigmoid":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    return F.cross_entropy(logits.view(-1, num_labels), labels.view(-1).long())


def _try_load_tokenizer(path: str | os.PathLike, kwargs: dict[str, Any]) -> Any:
    """The tokenizer saved beside a wrapper, if any (``None`` when the folder has none)."""
    try:
        return AutoTokenizer.from_pretrained(
            path, **{k: kwargs[k] for k in ("revision", "cache_dir", "token", "local_files_only") if k in kwargs})
    except (OSError, ValueError, TypeError):
        return None
