"""Configurations of the span-swap invariant text models: the base model's config plus the span-swap factors,
strategy and aggregation, all JSON so a saved wrapper reloads without pickles or remote code."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...actions.spans import SpanSwap
from ...row_plans import check_canonicalization
from ..base import EquivariantConfigMixin, check_bool, check_count

__all__ = ["EquivariantSequenceClassificationConfig", "EquivariantSentenceEmbeddingConfig", "output_link"]

#: Fields of the base config a classifier wrapper mirrors (pipelines read them from the wrapper's config).
_MIRRORED = ("id2label", "label2id", "problem_type", "pad_token_id")


def output_link(problem_type: str | None, num_labels: int) -> str:
    """The link of a classifier's logits: ``sigmoid`` (multi-label), ``identity`` (regression) or ``softmax``.

    Follows transformers: no ``problem_type`` and one label means regression.
    """
    if problem_type == "multi_label_classification":
        return "sigmoid"
    if problem_type == "regression" or (problem_type is None and num_labels == 1):
        return "identity"
    return "softmax"


class _SpanConfigMixin(EquivariantConfigMixin):
    """Fields shared by the classifier and the sentence-embedding configs."""

    allowed_strategies = ("auto", "full", "multi", "canonical", "none")
    nested_config_field = "base_config"

    def set_span_fields(self, *, base_config: Any, groups: Any, strategy: str, canonicalization: str,
                        aggregation: str, branch_weighting: str, base_model_name_or_path: str | None,
                        base_model_revision: str | None, save_base_weights: bool, max_rows: int | None,
                        deduplicate: bool) -> None:
        self.set_nested_config(base_config)
        self.set_equivariant_fields(strategy=strategy, aggregation=aggregation, branch_weighting=branch_weighting,
                                    base_model_name_or_path=base_model_name_or_path,
                                    base_model_revision=base_model_revision, save_base_weights=save_base_weights)
        self.canonicalization = check_canonicalization(canonicalization)
        if groups is not None and not isinstance(groups, list):
            raise ValueError(f"malformed group spec: 'groups' must be a list of span-swap specs, got "
                             f"{type(groups).__name__}")
        self.groups = [SpanSwap.from_spec(g).to_spec() for g in (groups or [])]  # validates saved specs
        self.max_rows = check_count("max_rows", max_rows)
        self.deduplicate = check_bool("deduplicate", deduplicate)

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.groups]


class EquivariantSequenceClassificationConfig(_SpanConfigMixin, PretrainedConfig):
    """Config of a text classifier made invariant to span swaps.

    Args:
        base_config: the base classifier's config (or its dict with ``model_type``); labels, ``problem_type`` and
            ``pad_token_id`` are mirrored from it unless given.
        groups: span-swap factor specs (``SpanSwap.to_spec()``: name, sets, case forms, neutral replacements).
        strategy: ``"auto"`` (default: the exact orbit average when it costs no more distinct copies than
            anchor-free ``multi``, else that), ``"full"`` (prod |Gi| copies), ``"multi"`` (sum |Gi|, design 2),
            ``"canonical"`` (1) or ``"none"`` (the base model, for comparisons).
        canonicalization: how ``multi`` removes the other factors from a branch: ``"neutral"`` (anchor-free: each
            set's neutral replacement, branch weights by presence) or ``"representative"`` (the paper's first
            member, constant weights).
        aggregation: ``"mean_prob"``, ``"mean_logits"`` or ``"max_prob"`` (regression: ``"mean_logits"`` only).
        branch_weighting: ``"size"`` or ``"equal"`` (multi only).
        base_model_name_or_path / base_model_revision / save_base_weights: see the other wrappers.
        max_rows: cap on base-model rows per call (bounds memory; ``None`` = no cap).
        deduplicate: run identical transformed texts of an input once.
    """

    model_type = "hf_equivariant_sequence_classification"

    def __init__(
        self,
        base_config: PretrainedConfig | dict[str, Any] | None = None,
        groups: list[dict[str, Any]] | None = None,
        strategy: str = "auto",
        canonicalization: str = "neutral",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        save_base_weights: bool = True,
        max_rows: int | None = None,
        deduplicate: bool = True,
        **kwargs: Any,
    ) -> None:
        self.set_span_fields(base_config=base_config, groups=groups, strategy=strategy,
                             canonicalization=canonicalization, aggregation=aggregation,
                             branch_weighting=branch_weighting, base_model_name_or_path=base_model_name_or_path,
                             base_model_revision=base_model_revision, save_base_weights=save_base_weights,
                             max_rows=max_rows, deduplicate=deduplicate)
        self.mirror_base_fields(kwargs, self.base_config, _MIRRORED)
        super().__init__(**kwargs)
        if self.link == "identity" and self.aggregation != "mean_logits":
            raise ValueError(f"aggregation {self.aggregation!r} needs class probabilities, but this is a regression "
                             "head (problem_type 'regression' or one label): use aggregation='mean_logits'")

    @property
    def link(self) -> str:
        """How the logits become scores: ``softmax``, ``sigmoid`` (multi-label) or ``identity`` (regression)."""
        return output_link(self.problem_type, self.num_labels)


class EquivariantSentenceEmbeddingConfig(_SpanConfigMixin, PretrainedConfig):
    """Config of a sentence encoder (masked mean pooling of an ``AutoModel``) made invariant to span swaps.

    Embeddings are averaged over the copies (``mean_logits`` on the identity link, the only aggregation for
    features). ``normalize`` L2-normalises the averaged embedding (still invariant). Other arguments as in
    :class:`EquivariantSequenceClassificationConfig`.
    """

    model_type = "hf_equivariant_sentence_embedding"

    def __init__(
        self,
        base_config: PretrainedConfig | dict[str, Any] | None = None,
        groups: list[dict[str, Any]] | None = None,
        strategy: str = "auto",
        canonicalization: str = "neutral",
        aggregation: str = "mean_logits",
        branch_weighting: str = "size",
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        save_base_weights: bool = True,
        max_rows: int | None = None,
        deduplicate: bool = True,
        normalize: bool = False,
        **kwargs: Any,
    ) -> None:
        if aggregation != "mean_logits":
            raise ValueError(f"sentence embeddings are features: only aggregation 'mean_logits' applies, got "
                             f"{aggregation!r}")
        self.set_span_fields(base_config=base_config, groups=groups, strategy=strategy,
                             canonicalization=canonicalization, aggregation=aggregation,
                             branch_weighting=branch_weighting, base_model_name_or_path=base_model_name_or_path,
                             base_model_revision=base_model_revision, save_base_weights=save_base_weights,
                             max_rows=max_rows, deduplicate=deduplicate)
        self.normalize = check_bool("normalize", normalize)
        self.mirror_base_fields(kwargs, self.base_config, ("pad_token_id",))
        kwargs.setdefault("pad_token_id", None)  # pooling reads it; transformers 5 no longer defaults it
        super().__init__(**kwargs)

    @property
    def link(self) -> str:
        """Embeddings are features: the identity link."""
        return "identity"
