"""Configuration of :class:`EquivariantModelForCausalLM`: the base model's config plus the group, strategy and
aggregation, all JSON so a saved wrapper reloads without pickles or remote code."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...actions.tokens import WordSwap
from ...plans import check_canonicalization
from ..base import EquivariantConfigMixin, check_bool, check_count

__all__ = ["EquivariantCausalLMConfig"]


class EquivariantCausalLMConfig(EquivariantConfigMixin, PretrainedConfig):
    """Config of an equivariant causal LM wrapper.

    Args:
        text_config: the base model's config (a ``PretrainedConfig`` or its dict with ``model_type``).
        groups: word-swap factor specs (``WordSwap.to_spec()``: name, words and resolved token ids).
        strategy: ``"auto"`` (the exact orbit average where it costs no more than anchor-free multi, else anchor-free
            multi), ``"full"`` (prod |Gi| copies), ``"multi"`` (sum |Gi|, design 2), ``"canonical"`` (1) or ``"none"``.
        canonicalization: design 2's treatment of the other factors' words: ``"neutral"`` (anchor-free: the mean
            embedding of the word's orbit, presence weights and routing) or ``"representative"`` (the paper's: the
            first member of the set). A saved config without this field is a 0.1 checkpoint: representative.
        aggregation: ``"mean_prob"``, ``"mean_logits"`` or ``"max_prob"``.
        branch_weighting: ``"size"`` or ``"equal"`` (multi only).
        base_model_name_or_path / base_model_revision: where the base came from (needed by light saves).
        save_base_weights: ``True`` saves the full weights; ``False`` saves only this config and reloads the base
            by name.
        max_rows: cap on base-model rows per forward call (bounds memory; ``None`` = no cap).
        share_identical_copies: run copies whose transformed sequences are identical once (copy-on-diverge).
        share_common_prefix: run the prefix every copy of a row shares once and fork at the first difference.
    """

    model_type = "hf_equivariant_causal_lm"
    allowed_strategies = ("auto", "full", "multi", "canonical", "none")
    nested_config_field = "text_config"

    def __init__(
        self,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        groups: list[dict[str, Any]] | None = None,
        strategy: str = "multi",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        save_base_weights: bool = True,
        max_rows: int | None = None,
        share_identical_copies: bool = True,
        canonicalization: str | None = None,
        share_common_prefix: bool = True,
        **kwargs: Any,
    ) -> None:
        text_config = self.set_nested_config(text_config)
        self.set_equivariant_fields(strategy=strategy, aggregation=aggregation, branch_weighting=branch_weighting,
                                    base_model_name_or_path=base_model_name_or_path,
                                    base_model_revision=base_model_revision, save_base_weights=save_base_weights)
        if groups is not None and not isinstance(groups, list):
            raise ValueError(f"malformed group spec: 'groups' must be a list of word-swap specs, got {type(groups).__name__}")
        self.groups = [WordSwap.from_spec(g).to_spec() for g in (groups or [])]  # validates saved specs
        self.max_rows = check_count("max_rows", max_rows)
        self.share_identical_copies = check_bool("share_identical_copies", share_identical_copies)
        self.share_common_prefix = check_bool("share_common_prefix", share_common_prefix)
        self.canonicalization = check_canonicalization("representative" if canonicalization is None
                                                       else canonicalization)
        self.mirror_base_fields(kwargs, text_config, ("bos_token_id", "eos_token_id", "pad_token_id"),
                                tie_word_embeddings=True)
        super().__init__(**kwargs)

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.groups]
