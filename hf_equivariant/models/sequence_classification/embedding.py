"""``EquivariantModelForSentenceEmbedding``: sentence embeddings (masked mean pooling of an ``AutoModel``) that are
exactly invariant to span swaps, for retrieval and clustering that must not separate "the Black nurse" from "the
White nurse". Embeddings are averaged over the copies (``mean_logits`` on the identity link)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AutoModel
from transformers.utils import ModelOutput

from ...aggregation import Aggregation
from .configuration import EquivariantSentenceEmbeddingConfig
from .modeling import GroupsArg, SpanInvariantModel

__all__ = ["EquivariantModelForSentenceEmbedding", "SentenceEmbeddingOutput", "mean_pool"]


@dataclass
class SentenceEmbeddingOutput(ModelOutput):
    """``embeddings [batch, hidden]``: the invariant sentence embeddings."""

    embeddings: torch.Tensor | None = None


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean of the hidden states over the tokens the mask keeps (padding excluded)."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)


class EquivariantModelForSentenceEmbedding(SpanInvariantModel):
    """Sentence embeddings whose value is identical for every span-swap group element applied to the text."""

    config_class = EquivariantSentenceEmbeddingConfig
    base_auto_class = AutoModel
    card_template = "sections"
    auto_classes = ("AutoModel",)
    card_pipeline_tag = "feature-extraction"
    card_tags = ("fairness", "sentence-embeddings")

    @classmethod
    def from_base(
        cls,
        model_or_name: Any,
        tokenizer: Any = None,
        groups: GroupsArg = ("race_ethnicity", "gender_extended"),
        strategy: str = "auto",
        canonicalization: str = "neutral",
        branch_weighting: str = "size",
        normalize: bool = False,
        max_rows: int | None = None,
        deduplicate: bool = True,
        revision: str | None = None,
        **loading_kwargs: Any,
    ) -> EquivariantModelForSentenceEmbedding:
        """Wrap an encoder (``AutoModel``: an instance, a Hub id or a local folder); see the classifier's
        ``from_base`` for ``groups`` and the strategies."""
        return cls._wrap(model_or_name, tokenizer, groups, revision, loading_kwargs, strategy=strategy,
                         canonicalization=canonicalization, branch_weighting=branch_weighting, normalize=normalize,
                         max_rows=max_rows, deduplicate=deduplicate)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs: Any,
    ) -> SentenceEmbeddingOutput | tuple:
        """Invariant embeddings ``[batch, hidden]``: the mean over copies of each copy's mean-pooled states."""
        inputs = self._inputs(input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds)
        run = self.run_invariant(inputs, lambda out, batch: mean_pool(out.last_hidden_state, batch["attention_mask"]),
                                 Aggregation("mean_logits", "identity"), kwargs)
        embeddings = F.normalize(run.output, dim=-1) if self.config.normalize else run.output
        output = SentenceEmbeddingOutput(embeddings=embeddings)
        use_dict = return_dict if return_dict is not None else getattr(self.config, "return_dict", True)
        return output if use_dict else output.to_tuple()

    @torch.no_grad()
    def encode(self, texts: str | Sequence[str], batch_size: int = 32) -> torch.Tensor:
        """Embeddings ``[len(texts), hidden]`` of raw texts, tokenized with the held tokenizer."""
        items = [texts] if isinstance(texts, str) else list(texts)
        device = next(self.parameters()).device
        chunks = []
        for start in range(0, len(items), batch_size):
            enc = self.action.tokenizer(items[start:start + batch_size], padding=True, truncation=True,
                                        return_tensors="pt")
            chunks.append(self(**{k: v.to(device) for k, v in enc.items()}).embeddings)
        return torch.cat(chunks)

    def equivariance_output(self, inputs: dict[str, Any]) -> torch.Tensor:
        return self(**inputs).embeddings

    def model_card_sections(self) -> tuple[str, str, str, list[tuple[str, str]]]:
        usage = """import hf_equivariant
from hf_equivariant import EquivariantModelForSentenceEmbedding

model = EquivariantModelForSentenceEmbedding.from_pretrained("<this repo or folder>")
model.encode(["The Black nurse helped me.", "The White nurse helped me."])  # identical rows"""
        sections = [
            ("Groups", self._groups_table()),
            ("Guarantee", "For every element g of the product group and every tokenized text x, the embedding of g.x "
                          "equals that of x (up to float rounding), so similarity search and clustering cannot "
                          "separate texts that differ only in the identity terms above."),
            ("Strategy and cost", self._cost_text() + " Pooling: masked mean of the last hidden states"
                                  + (", L2-normalised." if self.config.normalize else ".")),
            ("Checkpoint", self._checkpoint_text()),
        ]
        base = self.config.base_model_name_or_path
        title = f"Invariant sentence embeddings from {base or 'an encoder'} ({', '.join(self.config.group_names)})"
        summary = "Sentence embeddings wrapped by hf_equivariant to be exactly invariant to swapping identity terms."
        return title, summary, usage, sections

