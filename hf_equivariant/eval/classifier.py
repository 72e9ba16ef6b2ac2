"""Counterfactual fairness of text classifiers under span swaps: accuracy, flip rate, counterfactual token
fairness gap and false-positive-rate gaps across identity terms.

Every text is evaluated together with its whole orbit (every group element applied to its token ids), so the
measures are exact, not sampled:

- **flip rate**: share of texts whose predicted label changes under some group element;
- **CTF gap** (counterfactual token fairness, Garg et al. 2019): mean ``|p(g.x) - p(x)|`` of the positive class
  over texts and elements;
- **FPR gap**: per factor, the largest difference between the false-positive rates of its identity terms (member
  position ``j`` of every set: "Black" and "African American" together). *Orbit*: over the counterfactually
  complete set (every negative text with every element applied; each term appears equally often, the protocol of
  identity-term templates); *held-out*: over the texts as given.

A model is any ``predict(batch) -> logits`` on tokenizer batches, so wrappers, bases and training-time baselines
(blindness: a preprocessing step inside ``predict``) are measured the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..actions.spans import SpanSwapAction

__all__ = ["CounterfactualPredictions", "counterfactual_predictions", "classifier_metrics", "term_mentions",
           "term_names"]

Predict = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass
class CounterfactualPredictions:
    """Class probabilities of every element applied to every text.

    Attributes:
        probs: ``[G, N, K]`` probabilities (softmax of the logits) of element ``g`` applied to text ``n``.
        elements: ``[G, F]`` factor indices of the elements (row 0 is the identity).
        mentions: ``[N, F, M]`` whether text ``n`` mentions member position ``j`` of factor ``f``.
    """

    probs: torch.Tensor
    elements: torch.Tensor
    mentions: torch.Tensor

    def moved_mentions(self, orders: Sequence[int]) -> torch.Tensor:
        """``[G, N, F, M]``: the mentions of every counterfactual (element g moves position j to j + g_f)."""
        g, f = self.elements.shape
        m = self.mentions.shape[-1]
        j = torch.arange(m)
        order = torch.tensor(list(orders))[:, None]  # [F, 1]
        source = (j[None, None, :] - self.elements[:, :, None]) % order[None]  # [G, F, M]
        valid = j[None, None, :] < order[None]
        gathered = self.mentions[None].expand(g, -1, -1, -1).gather(
            3, source[:, None].expand(g, self.mentions.shape[0], f, m))
        return gathered & valid[:, None]


def term_mentions(action: SpanSwapAction, input_ids: torch.Tensor, attention_mask: torch.Tensor | None
                  ) -> torch.Tensor:
    """``[N, F, M]``: which member positions of each factor every row mentions (M = the largest order)."""
    orders = action.factor_orders
    out = torch.zeros(input_ids.shape[0], len(orders), max(orders), dtype=torch.bool)
    names = [f.name for f in action.factors]
    for row, matches in enumerate(action.find_matches(input_ids, attention_mask)):
        for m in matches:
            out[row, names.index(m.factor), m.member_index] = True
    return out


def term_names(action: SpanSwapAction) -> list[list[str]]:
    """Per factor, a name for each member position (the members of its first set)."""
    return [list(f.sets[0]) for f in action.factors]


def counterfactual_predictions(predict: Predict, action: SpanSwapAction, texts: Sequence[str], *,
                               elements: torch.Tensor | None = None, batch_size: int = 32,
                               max_length: int | None = None) -> CounterfactualPredictions:
    """Probabilities of ``predict`` on every text and every group element applied to it.

    ``elements`` (``[G, F]`` factor indices, identity first) defaults to the whole group. Texts are tokenized with
    the action's tokenizer, ``batch_size`` at a time; each batch and its ``G`` counterfactuals form one call.
    """
    tok = action.tokenizer
    parts = action.group.elements if elements is None else torch.as_tensor(elements)
    if parts.dim() != 2 or bool(parts[0].ne(0).any()):
        raise ValueError("elements must be [G, factors] factor indices starting with the identity")
    probs, mentions = [], []
    for start in range(0, len(texts), batch_size):
        enc = tok(list(texts[start:start + batch_size]), padding=True, truncation=max_length is not None,
                  max_length=max_length, return_tensors="pt")
        mentions.append(term_mentions(action, enc["input_ids"], enc["attention_mask"]))
        moved = action.act(enc["input_ids"], enc["attention_mask"], parts, token_type_ids=enc.get("token_type_ids"),
                           padding_side="right")
        with torch.no_grad():
            logits = predict(moved)
        probs.append(logits.float().softmax(-1).view(parts.shape[0], enc["input_ids"].shape[0], -1))
    return CounterfactualPredictions(torch.cat(probs, dim=1), parts, torch.cat(mentions))


def _fpr_gaps(positive: torch.Tensor, negative: torch.Tensor, mentions: torch.Tensor, orders: Sequence[int]
              ) -> tuple[list[list[float | None]], list[float]]:
    """Per factor and member position, the false-positive rate; per factor, max - min over its positions.

    ``positive [G, N]`` predictions of the positive class, ``negative [N]`` texts whose label is negative,
    ``mentions [G, N, F, M]``.
    """
    rates, gaps = [], []
    for f, k in enumerate(orders):
        per_term: list[float | None] = []
        for j in range(k):
            sel = mentions[:, :, f, j] & negative[None]
            count = int(sel.sum())
            per_term.append(float((positive & sel).sum()) / count if count else None)
        rates.append(per_term)
        known = [r for r in per_term if r is not None]
        gaps.append(max(known) - min(known) if len(known) == k else float("nan"))
    return rates, gaps


def classifier_metrics(preds: CounterfactualPredictions, labels: torch.Tensor | None, action: SpanSwapAction,
                       positive: int = 1) -> dict[str, Any]:
    """Accuracy, flip rate, CTF gap and FPR gaps (orbit and held-out) of one model; see the module docstring."""
    probs = preds.probs
    predicted = probs.argmax(-1)  # [G, N]
    orders = action.factor_orders
    with_terms = preds.mentions.any(-1).any(-1)
    flips = (predicted != predicted[0]).any(0)
    p_pos = probs[..., positive]
    out: dict[str, Any] = {
        "texts": int(probs.shape[1]),
        "elements": int(probs.shape[0]),
        "texts_with_terms": int(with_terms.sum()),
        "flip_rate": float(flips.float().mean()),
        "flip_rate_with_terms": float(flips[with_terms].float().mean()) if bool(with_terms.any()) else 0.0,
        "ctf_gap": float((p_pos - p_pos[0]).abs().mean()),
    }
    if labels is not None:
        labels = torch.as_tensor(labels)
        out["accuracy"] = float((predicted[0] == labels).float().mean())
        negative = labels != positive
        factors = [f.name for f in action.factors]
        moved = preds.moved_mentions(orders)
        for key, pos, men in (("orbit", predicted == positive, moved),
                              ("heldout", (predicted[0] == positive)[None], preds.mentions[None])):
            rates, gaps = _fpr_gaps(pos, negative, men, orders)
            out[f"fpr_{key}"] = {name: dict(zip(terms, r))
                                 for name, terms, r in zip(factors, term_names(action), rates)}
            out[f"fpr_gap_{key}"] = dict(zip(factors, gaps))
            finite = [g for g in gaps if g == g]
            out[f"fpr_gap_{key}_max"] = max(finite) if finite else float("nan")
        out["fpr_overall"] = float((predicted[0] == positive)[negative].float().mean()) if bool(negative.any()) else 0.0
    return out
