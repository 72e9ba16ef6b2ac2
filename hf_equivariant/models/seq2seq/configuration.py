"""Configuration of :class:`EquivariantModelForSeq2SeqLM`: the base encoder-decoder's config plus the group (one
word-swap spec list per side), strategy and aggregation, all JSON so a saved wrapper reloads without pickles."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig

from ...actions.tokens import WordSwap
from ...plans import check_canonicalization
from ..base import EquivariantConfigMixin, check_bool

__all__ = ["EquivariantSeq2SeqLMConfig"]


def _specs(groups: Any, field: str) -> list[dict[str, Any]]:
    if groups is not None and not isinstance(groups, list):
        raise ValueError(f"malformed group spec: {field!r} must be a list of word-swap specs, got "
                         f"{type(groups).__name__}")
    return [WordSwap.from_spec(g).to_spec() for g in (groups or [])]  # validates saved specs


class EquivariantSeq2SeqLMConfig(EquivariantConfigMixin, PretrainedConfig):
    """Config of an equivariant sequence-to-sequence wrapper.

    Args:
        text_config: the base model's config (a ``PretrainedConfig`` or its dict with ``model_type``).
        input_groups: word-swap specs (``WordSwap.to_spec()``) of the action on encoder ids, one per factor.
        output_groups: word-swap specs of the action on decoder ids and output distributions: the same factors
            (names and orders, in the same order). With one vocabulary for both sides both lists are usually the
            same, each cycle list holding the command words and the output words.
        strategy: ``"full"`` (prod |Gi| copies), ``"multi"`` (sum |Gi|, design 2), ``"canonical"`` (1) or
            ``"none"``.
        canonicalization: design 2's treatment of the other factors' words: ``"representative"`` (the paper's: the
            first member of each cycle) or ``"neutral"`` (anchor-free: the mean embedding of the word's cycle,
            presence weights and routing).
        aggregation: ``"mean_prob"``, ``"mean_logits"`` or ``"max_prob"``.
        branch_weighting: ``"size"`` or ``"equal"`` (multi only).
        base_model_name_or_path / base_model_revision: where the base came from (needed by light saves).
        save_base_weights: ``True`` saves the full weights; ``False`` saves only this config.
        share_identical_copies: run copies whose transformed (encoder, decoder) sequences are identical once.
    """

    model_type = "hf_equivariant_seq2seq_lm"
    allowed_strategies = ("full", "multi", "canonical", "none")
    nested_config_field = "text_config"

    def __init__(
        self,
        text_config: PretrainedConfig | dict[str, Any] | None = None,
        input_groups: list[dict[str, Any]] | None = None,
        output_groups: list[dict[str, Any]] | None = None,
        strategy: str = "multi",
        canonicalization: str = "representative",
        aggregation: str = "mean_prob",
        branch_weighting: str = "size",
        base_model_name_or_path: str | None = None,
        base_model_revision: str | None = None,
        save_base_weights: bool = True,
        share_identical_copies: bool = True,
        **kwargs: Any,
    ) -> None:
        text_config = self.set_nested_config(text_config)
        self.set_equivariant_fields(strategy=strategy, aggregation=aggregation, branch_weighting=branch_weighting,
                                    base_model_name_or_path=base_model_name_or_path,
                                    base_model_revision=base_model_revision, save_base_weights=save_base_weights)
        self.input_groups = _specs(input_groups, "input_groups")
        self.output_groups = _specs(output_groups, "output_groups")
        ins = [(g["name"], g["order"]) for g in self.input_groups]
        outs = [(g["name"], g["order"]) for g in self.output_groups]
        if ins != outs:
            raise ValueError(f"input_groups and output_groups must list the same factors (names and orders, in "
                             f"order): {ins} vs {outs}")
        self.canonicalization = check_canonicalization(canonicalization)
        self.share_identical_copies = check_bool("share_identical_copies", share_identical_copies)
        kwargs["is_encoder_decoder"] = True
        self.mirror_base_fields(kwargs, text_config,
                                ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"),
                                tie_word_embeddings=True)
        super().__init__(**kwargs)

    @property
    def group_names(self) -> list[str]:
        return [g["name"] for g in self.output_groups]
