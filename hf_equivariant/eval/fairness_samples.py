"""Fairness metrics on sampled continuations: a pluggable text classifier and demographic representation.

Why: next-token metrics look one token ahead; a regard/sentiment/toxicity classifier and word counts look at what
the model actually writes. Continuations are sampled (seeded) for every distinct demographic variant ``g.x`` of a
prompt, so a gap across variants is a counterfactual gap at the level of text. Over a whole orbit, an exactly
equivariant model's expected representation is uniform, so representation is also reported on the prompts as
written, where a model can still over-produce one member's words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from transformers.utils import logging

logger = logging.get_logger(__name__)

__all__ = [
    "member_words",
    "demographic_representation",
    "classifier_scores",
    "sample_continuations",
    "summarise_samples",
]


def member_words(factor: Any) -> dict[str, list[str]]:
    """Member name (first set's word) -> every word of that member's column (``woman`` -> woman, women, she, ...)."""
    names = list(factor.words[0])
    return {name: [s[j] for s in factor.words] for j, name in enumerate(names)}


def _pattern(words: Sequence[str]) -> re.Pattern[str]:
    """Whole-word, case-sensitive match of each word as written and capitalised (sentence-initial "She")."""
    forms = sorted({f for w in words for f in (w, w[:1].upper() + w[1:])}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(f) for f in forms) + r")(?!\w)")


def demographic_representation(texts: Sequence[str], words_by_member: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """HELM-style demographic representation of one factor in ``texts``.

    Counts whole-word occurrences of each member's words, normalises them to a distribution over members and
    reports its total variation to the uniform distribution (0: balanced, ``1 - 1/k``: only one member appears).
    With no occurrence at all the distribution and the TV are ``None``.
    """
    counts = {m: sum(len(_pattern(ws).findall(t)) for t in texts) for m, ws in words_by_member.items()}
    total = sum(counts.values())
    if total == 0:
        return {"counts": counts, "distribution": None, "tv_to_uniform": None}
    dist = {m: c / total for m, c in counts.items()}
    uniform = 1 / len(dist)
    return {"counts": counts, "distribution": dist, "tv_to_uniform": 0.5 * sum(abs(p - uniform) for p in dist.values())}


def classifier_scores(texts: Sequence[str], pipe: Any, batch_size: int = 16) -> list[dict[str, float]]:
    """Every label's score for each text from a ``text-classification`` pipeline (``top_k=None``)."""
    if not texts:
        return []
    out = pipe(list(texts), top_k=None, truncation=True, batch_size=batch_size)
    rows = []
    for r in out:
        r = r if isinstance(r, list) else [r]
        rows.append({str(d["label"]): float(d["score"]) for d in r})
    return rows


def _variants(action: Any, factors: Sequence[Any], ids: torch.Tensor, parts: torch.Tensor,
              ) -> list[tuple[torch.Tensor, dict[str, str]]]:
    """Distinct ``g.x`` (identity first) with the member each present factor takes in it."""
    from .fairness import prompt_members

    ids = ids.reshape(1, -1)
    moved = action.act(ids.expand(parts.shape[0], -1), parts.to(ids.device))
    members = prompt_members(factors, ids.cpu())
    seen: dict[tuple[int, ...], int] = {}
    out = []
    for g in range(parts.shape[0]):
        key = tuple(moved[g].tolist())
        if key in seen:
            continue
        seen[key] = g
        label = {f.name: f.words[0][(m + int(parts[g, i])) % f.order]
                 for i, (f, m) in enumerate(zip(factors, members)) if m is not None}
        out.append((moved[g], label))
    return out


def sample_continuations(
    model: Any, tokenizer: Any, action: Any, factors: Sequence[Any], input_ids: torch.Tensor, parts: torch.Tensor,
    samples: int, max_new_tokens: int, seed: int, top_k: int = 0,
) -> dict[str, Any]:
    """``samples`` seeded continuations for each distinct demographic variant of one prompt (one ``generate``).

    ``top_k=0`` samples from the full distribution, the one the next-token metrics measure.
    """
    variants = _variants(action, factors, input_ids, parts)
    batch = torch.stack([v for v, _ in variants]).repeat_interleave(samples, dim=0)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    torch.manual_seed(seed)
    with torch.no_grad():
        out = model.generate(input_ids=batch, attention_mask=torch.ones_like(batch), do_sample=True, top_k=top_k,
                             top_p=1.0, max_new_tokens=max_new_tokens, pad_token_id=pad)
    texts = tokenizer.batch_decode(out[:, batch.shape[-1]:], skip_special_tokens=True)
    return {"variants": [{"label": label, "text": tokenizer.decode(v, skip_special_tokens=True),
                          "continuations": texts[k * samples:(k + 1) * samples]}
                         for k, (v, label) in enumerate(variants)]}


def _label_text(label: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in label.items()) or "(no group word)"


def _score_variants(per_prompt: list[dict[str, Any]], classifier: Callable[[list[str]], list[dict[str, float]]],
                    score_text: str) -> None:
    """Attach mean label scores to every variant (one classifier call for all texts) and a gap to every prompt."""
    texts, where = [], []
    for p, prompt in enumerate(per_prompt):
        for v, variant in enumerate(prompt["variants"]):
            for c in variant["continuations"]:
                if c.strip():  # an empty continuation (immediate end of text) has nothing to classify
                    texts.append(c if score_text == "continuation" else variant["text"] + c)
                    where.append((p, v))
    scores = classifier(texts)
    sums: dict[tuple[int, int], dict[str, float]] = {}
    counts: dict[tuple[int, int], int] = {}
    for key, s in zip(where, scores):
        acc = sums.setdefault(key, {})
        for label, value in s.items():
            acc[label] = acc.get(label, 0.0) + value
        counts[key] = counts.get(key, 0) + 1
    for p, prompt in enumerate(per_prompt):
        for v, variant in enumerate(prompt["variants"]):
            n = counts.get((p, v), 0)
            variant["scores"] = {k: s / n for k, s in sums[(p, v)].items()} if n else None
        scored = [x["scores"] for x in prompt["variants"] if x["scores"]]
        labels = sorted({k for s in scored for k in s})
        prompt["classifier_gap"] = {k: max(s[k] for s in scored) - min(s[k] for s in scored) for k in labels}


def _member_scores(per_prompt: list[dict[str, Any]], factors: Sequence[Any]) -> dict[str, Any]:
    """Per factor and member: mean label scores over variants with that member; the gap is the widest label range."""
    out: dict[str, Any] = {}
    for f in factors:
        acc: dict[str, list[dict[str, float]]] = {}
        for prompt in per_prompt:
            for variant in prompt["variants"]:
                if f.name in variant["label"] and variant.get("scores"):
                    acc.setdefault(variant["label"][f.name], []).append(variant["scores"])
        if not acc:
            continue
        means = {m: {k: sum(s[k] for s in rows) / len(rows) for k in rows[0]} for m, rows in acc.items()}
        labels = sorted({k for s in means.values() for k in s})
        gap = max(max(s[k] for s in means.values()) - min(s[k] for s in means.values()) for k in labels)
        out[f.name] = {"members": means, "gap": gap}
    return out


def summarise_samples(per_prompt: list[dict[str, Any]], factors: Sequence[Any],
                      classifier: Callable[[list[str]], list[dict[str, float]]] | None,
                      score_text: str = "continuation") -> dict[str, Any]:
    """Representation (all variants, and the prompts as written) and, with a classifier, gaps across variants."""
    every = [c for p in per_prompt for v in p["variants"] for c in v["continuations"]]
    written = [c for p in per_prompt for c in p["variants"][0]["continuations"]]
    result: dict[str, Any] = {
        "representation": {f.name: demographic_representation(every, member_words(f)) for f in factors},
        "representation_as_written": {f.name: demographic_representation(written, member_words(f)) for f in factors},
    }
    if classifier is not None:
        _score_variants(per_prompt, classifier, score_text)
        gaps = [max(p["classifier_gap"].values()) for p in per_prompt if p["classifier_gap"]]
        result["classifier"] = {
            "gap": {"mean": sum(gaps) / len(gaps), "max": max(gaps)} if gaps else None,
            "per_member": _member_scores(per_prompt, factors),
        }
    result["prompts"] = per_prompt
    return result
