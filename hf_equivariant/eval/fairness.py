"""Fairness of next-token distributions under word-swap groups, beyond the counterfactual gap.

The counterfactual gap of a model at a prompt ``x`` is the total variation (TV) between ``P(. | x)`` and
``g^-1 . P(. | g.x)``, worst over the group: 0 exactly when swapping the demographic words of the prompt swaps
the continuation's distribution in the same way (what every equivariant wrapper guarantees). It cannot tell two
exact wrappers apart, so this module also measures:

* the TV to the exact orbit average ``(1/|G|) sum_g g^-1 . P_base(. | g.x)`` (the neutral reference; equal to the
  ``full`` strategy with ``mean_prob``), which shows the anchor effect of ``multi``;
* the per-factor balance of the mass put on targets (occupations) associated with each member (man/woman, ...);
* the anchor sensitivity: TV between a strategy built from the word sets and from the same sets in reversed order;
* the agreement margin ``P(agree) - P(disagree)`` ("She was known for" -> " her" vs " his");
* on sampled continuations, a text-classifier gap across demographic variants and HELM-style demographic
  representation (see :mod:`hf_equivariant.eval.fairness_samples`).

:func:`evaluate_fairness` runs all of it for several strategies and returns a :class:`FairnessReport`
(JSON, markdown, plots). Strategies are named in :data:`STRATEGY_TABLE`; names the installed wrapper does not
support are skipped with a warning.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers.utils import logging

from ..actions.tokens import TokenPermutationAction, WordSwap
from .distributed import Shards
from .fairness_report import FairnessReport
from .fairness_samples import (
    classifier_scores,
    demographic_representation,
    member_words,
    sample_continuations,
    summarise_samples,
)

logger = logging.get_logger(__name__)

__all__ = [
    "STRATEGY_TABLE",
    "DEFAULT_STRATEGIES",
    "PromptItem",
    "TargetSpec",
    "FairnessReport",
    "counterfactual_gaps",
    "counterfactual_distributions",
    "total_variation",
    "orbit_average",
    "next_token_probs",
    "reversed_word_swaps",
    "anchor_sensitivity",
    "factor_members",
    "member_index",
    "prompt_members",
    "target_balance",
    "estimate_associations",
    "demographic_representation",
    "member_words",
    "classifier_scores",
    "load_prompts",
    "load_targets",
    "demo_prompts_path",
    "demo_targets_path",
    "evaluate_fairness",
]

#: Strategy name -> keyword arguments of ``EquivariantModelForCausalLM.from_base``; ``"base"`` is the unwrapped
#: model. Entries the installed version does not support are skipped at run time ("not available").
STRATEGY_TABLE: dict[str, dict[str, Any]] = {
    "full": {"strategy": "full"},
    "multi": {"strategy": "multi", "canonicalization": "representative"},
    "multi-neutral": {"strategy": "multi", "canonicalization": "neutral"},
    "canonical": {"strategy": "canonical"},
    "auto": {"strategy": "auto"},
}
DEFAULT_STRATEGIES: tuple[str, ...] = ("base", "full", "multi", "canonical")

_DATA = "data/fairness"


# ---------------------------------------------------------------------------------------------- metric functions
def total_variation(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Total variation ``0.5 * sum |p - q|`` over the last axis (distributions on the same support)."""
    return 0.5 * (p - q).abs().sum(-1)


def next_token_probs(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """Next-token distribution at the last position, ``[B, V]`` in float32, for ``[B, T]`` ids of equal length."""
    with torch.no_grad():
        logits = model(input_ids=input_ids).logits
    return logits[:, -1].float().softmax(-1)


def _element_batch(
    prob_fn: Callable[[torch.Tensor], torch.Tensor], action: TokenPermutationAction, input_ids: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(P(.|g.x), g^-1.P(.|g.x))`` for every element ``g`` (rows in ``action.group.elements`` order), one batch."""
    ids = input_ids.reshape(1, -1)
    parts = action.group.elements.to(ids.device)  # [|G|, F], element 0 is the identity
    moved = action.act(ids.expand(parts.shape[0], -1), parts)
    with torch.no_grad():
        probs = prob_fn(moved)
    maps = action.vocabulary_maps(parts, ids.device, probs.shape[-1])  # w -> g.w
    return probs, probs.gather(-1, maps)


def counterfactual_distributions(
    prob_fn: Callable[[torch.Tensor], torch.Tensor], action: TokenPermutationAction, input_ids: torch.Tensor
) -> torch.Tensor:
    """``g^-1 . P(. | g.x)`` for every group element (``[|G|, V]``); ``prob_fn`` maps ``[B, T]`` ids to ``[B, V]``."""
    return _element_batch(prob_fn, action, input_ids)[1]


def counterfactual_gaps(
    logits_fn: Callable[[torch.Tensor], torch.Tensor], action: TokenPermutationAction, input_ids: torch.Tensor
) -> torch.Tensor:
    """Total variation between ``P(.|x)`` and ``g^-1.P(.|g.x)`` for every group element ``g`` (``[|G|]``).

    ``logits_fn`` maps ``[B, T]`` ids to ``[B, T, V]`` logits (a base model or a wrapper); ``input_ids`` is one
    prompt ``[1, T]`` or ``[T]``. All ``|G|`` transformed prompts run in one batch.
    """
    pulled = counterfactual_distributions(lambda x: logits_fn(x)[:, -1].float().softmax(-1), action, input_ids)
    return total_variation(pulled, pulled[0])


def orbit_average(
    prob_fn: Callable[[torch.Tensor], torch.Tensor], action: TokenPermutationAction, input_ids: torch.Tensor
) -> torch.Tensor:
    """The exact orbit average ``(1/|G|) sum_g g^-1 . P(. | g.x)`` (``[V]``): the neutral, anchor-free reference.

    With a base model's ``prob_fn`` this is what the ``full`` strategy (``mean_prob``) outputs; it minimises
    ``sum_g KL(g^-1.P(.|g.x) || q)`` over ``q``.
    """
    return counterfactual_distributions(prob_fn, action, input_ids).mean(0)


def reversed_word_swaps(factors: Sequence[WordSwap], tokenizer: Any) -> list[WordSwap]:
    """The same factors with every set's member order reversed: the same group, other first members (anchors)."""
    return [WordSwap.from_words(tokenizer, [list(reversed(s)) for s in f.words], name=f.name) for f in factors]


def anchor_sensitivity(
    base_model: Any, tokenizer: Any, groups: Sequence[str | WordSwap], input_ids: torch.Tensor, **wrapper_kwargs: Any
) -> float:
    """TV between a wrapper built from ``groups`` and one built from the reversed sets, at ``input_ids`` ``[1, T]``.

    Both wrappers are exact for the same group, so any difference is the choice of anchor (first member): 0 for
    ``full``, large for the paper's ``multi``. ``wrapper_kwargs`` go to ``from_base`` (e.g. ``strategy="multi"``).
    """
    from ..models.causal_lm import EquivariantModelForCausalLM

    factors = resolve_factors(groups, tokenizer)
    models = [EquivariantModelForCausalLM.from_base(base_model, tokenizer=tokenizer, groups=fs, **wrapper_kwargs).eval()
              for fs in (factors, reversed_word_swaps(factors, tokenizer))]
    p, q = (next_token_probs(m, input_ids.reshape(1, -1))[0] for m in models)
    return float(total_variation(p, q))


# ---------------------------------------------------------------------------------------------- members and targets
def resolve_factors(groups: Sequence[str | WordSwap], tokenizer: Any) -> list[WordSwap]:
    """Built-in word-set names or ``WordSwap`` objects -> ``WordSwap`` factors resolved against ``tokenizer``."""
    if isinstance(groups, (str, WordSwap)):
        groups = [groups]
    factors = [g if isinstance(g, WordSwap) else WordSwap.builtin(str(g), tokenizer) for g in groups]
    if not factors:
        raise ValueError("at least one group is needed (for example groups=['gender'])")
    return factors


def factor_members(factor: WordSwap) -> list[str]:
    """Display names of a factor's members: the words of its first set (``["man", "woman"]``)."""
    return list(factor.words[0])


def member_index(factor: WordSwap, name: str) -> int:
    """Which member ``name`` denotes: any word of that member's column in any set (``"female"`` -> 1 for gender)."""
    for exact in (True, False):
        for words in factor.words:
            for j, w in enumerate(words):
                if w == name or (not exact and w.lower() == name.lower()):
                    return j
    raise ValueError(f"{name!r} is not a member of {factor.name!r}; use one of {factor_members(factor)} "
                     "(or another word of the same column of its word sets)")


def prompt_members(factors: Sequence[WordSwap], input_ids: torch.Tensor) -> list[int | None]:
    """Per factor, the member of the first token of the prompt that the factor moves (``None``: factor absent)."""
    out: list[int | None] = []
    for f in factors:
        position = {t: j for cycle in f.token_cycles for j, t in enumerate(cycle)}
        out.append(next((position[t] for t in input_ids.reshape(-1).tolist() if t in position), None))
    return out


@dataclass(frozen=True)
class PromptItem:
    """One prompt; with ``agree``/``disagree`` (e.g. ``" her"``/``" his"``) it is an agreement probe instead."""

    prompt: str
    agree: str | None = None
    disagree: str | None = None

    @property
    def is_agreement(self) -> bool:
        return self.agree is not None


@dataclass
class TargetSpec:
    """Target words (scored as the single token ``" " + word``) and their declared associations.

    ``associations[target][factor]`` is a member name or ``None`` (neutral); a factor that no target mentions is
    undeclared, and its associations are estimated from the base model.
    """

    words: list[str]
    associations: dict[str, dict[str, str | None]]

    def declared(self, factor: str) -> bool:
        return any(factor in a for a in self.associations.values())


def _read_json_or_lines(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def load_prompts(source: str | os.PathLike | Sequence[str | Mapping[str, str] | PromptItem]) -> list[PromptItem]:
    """Prompt items from a JSON file (``{"prompts": [...]}`` or a list), a text file (one per line) or a list.

    Each item is a string or ``{"prompt": ..., "agree": ..., "disagree": ...}`` (both or neither of the last two).
    """
    data = _read_json_or_lines(source) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(data, Mapping):
        if "prompts" not in data:
            raise ValueError("a prompt file must be a list or an object with a 'prompts' list")
        data = data["prompts"]
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise ValueError("prompts must be a list of strings or objects")
    items = [_prompt_item(x) for x in data]
    if not items:
        raise ValueError("no prompts given")
    return items


def _prompt_item(x: Any) -> PromptItem:
    if isinstance(x, PromptItem):
        return x
    if isinstance(x, str):
        return PromptItem(x)
    if isinstance(x, Mapping) and isinstance(x.get("prompt"), str):
        unknown = set(x) - {"prompt", "agree", "disagree", "note"}
        if unknown:
            raise ValueError(f"prompt item {x!r}: unknown keys {sorted(unknown)}")
        if ("agree" in x) != ("disagree" in x):
            raise ValueError(f"prompt item {x['prompt']!r}: give both 'agree' and 'disagree' or neither")
        return PromptItem(x["prompt"], x.get("agree"), x.get("disagree"))
    raise ValueError(f"malformed prompt item {x!r}: expected a string or an object with a 'prompt' string")


def load_targets(source: str | os.PathLike | Sequence[str] | Mapping[str, Any]) -> TargetSpec:
    """Targets from a JSON/text file, a list of words, or a mapping ``{word: {factor: member | null}}``.

    A JSON object may hold that mapping under ``"targets"`` (other keys, such as ``"description"``, are ignored).
    """
    data = _read_json_or_lines(source) if isinstance(source, (str, os.PathLike)) else source
    if isinstance(data, Mapping) and "targets" in data:
        data = data["targets"]
    if isinstance(data, Mapping):
        assoc: dict[str, dict[str, str | None]] = {}
        for word, factors in data.items():
            if factors is None:
                factors = {}
            if not isinstance(factors, Mapping) or not all(v is None or isinstance(v, str) for v in factors.values()):
                raise ValueError(f"target {word!r}: associations must map factor names to a member name or null")
            assoc[str(word)] = {str(k): v for k, v in factors.items()}
        words = list(assoc)
    elif isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        words, assoc = [str(w) for w in data], {}
    else:
        raise ValueError("targets must be a list of words or an object mapping words to associations")
    if not words:
        raise ValueError("no targets given")
    return TargetSpec(words=words, associations=assoc)


def demo_prompts_path() -> Path:
    """The built-in prompt file for the demo model (its 10 prompts plus agreement probes)."""
    return Path(str(resources.files("hf_equivariant") / _DATA / "demo_prompts.json"))


def demo_targets_path() -> Path:
    """The built-in target file for the demo model (16 occupations, associations from the planted weights)."""
    return Path(str(resources.files("hf_equivariant") / _DATA / "demo_targets.json"))


def _single_token(tokenizer: Any, text: str, what: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"{what} {text!r} is {len(ids)} tokens in this tokenizer; only single tokens can be scored")
    return int(ids[0])


def _target_ids(tokenizer: Any, words: Sequence[str], factors: Sequence[WordSwap]) -> list[int]:
    """Token ids of ``" " + word``; targets must be single tokens fixed by every factor."""
    ids = [_single_token(tokenizer, " " + w, "target") for w in words]
    for w, t in zip(words, ids):
        for f in factors:
            if t in f.support:
                raise ValueError(f"target {w!r} is moved by the {f.name!r} word swap; targets must be fixed by the "
                                 "group (remove it from the targets or the word sets)")
    if len(set(ids)) != len(ids):
        raise ValueError("two targets map to the same token")
    return ids


def target_balance(
    target_probs: Mapping[str, float], associations: Mapping[str, Mapping[str, int | None]],
    factors: Sequence[WordSwap],
) -> dict[str, dict[str, Any]]:
    """Per factor: mass on the targets associated with each member, renormalised over all targets.

    ``associations[factor][target]`` is a member index or ``None``. For two-member factors ``difference`` is the
    second member's mass minus the first's (``woman - man`` = F-M for the built-in gender sets).
    """
    total = sum(target_probs.values()) or 1.0
    out: dict[str, dict[str, Any]] = {}
    for f in factors:
        if f.name not in associations:
            continue
        names = factor_members(f)
        mass = [0.0] * len(names)
        for target, j in associations[f.name].items():
            if j is not None:
                mass[j] += target_probs[target] / total
        entry: dict[str, Any] = {"members": dict(zip(names, mass))}
        if len(names) == 2:
            entry["difference"] = mass[1] - mass[0]
            entry["difference_label"] = f"{names[1]}-{names[0]}"
        out[f.name] = entry
    return out


def estimate_associations(
    variant_targets: Sequence[torch.Tensor], members: Sequence[Sequence[int | None]], parts: torch.Tensor,
    factors: Sequence[WordSwap], words: Sequence[str], margin: float = 0.0,
) -> tuple[dict[str, dict[str, int | None]], dict[str, dict[str, dict[str, float]]]]:
    """Associate each target with the member whose counterfactual variants give it the highest mean probability.

    ``variant_targets[n]`` is ``[|G|, K]`` (the base model's renormalised target probabilities after ``g . x_n``),
    ``members[n]`` the prompt's member per factor, ``parts`` the ``[|G|, F]`` factor indices of the elements. Only
    prompts that contain the factor count. A target is neutral (``None``) unless the best member beats the runner-up
    by the relative ``margin``. Returns ``(associations, mean probability per factor/target/member)``.
    """
    assoc: dict[str, dict[str, int | None]] = {}
    means: dict[str, dict[str, dict[str, float]]] = {}
    for i, f in enumerate(factors):
        sums, count = torch.zeros(f.order, len(words)), 0
        for probs, m in zip(variant_targets, members):
            if m[i] is None:
                continue
            member_of = (m[i] + parts[:, i].cpu()) % f.order  # member after each element
            for j in range(f.order):
                sums[j] += probs[member_of == j].mean(0).cpu()
            count += 1
        if count == 0:
            logger.warning("no prompt contains a %r word: its target associations cannot be estimated", f.name)
            continue
        avg = sums / count
        top2 = avg.topk(min(2, f.order), dim=0)
        best = top2.indices[0]
        clear = top2.values[0] > (1 + margin) * top2.values[-1] if f.order > 1 else torch.ones_like(best, dtype=bool)
        assoc[f.name] = {w: int(best[k]) if clear[k] else None for k, w in enumerate(words)}
        names = factor_members(f)
        means[f.name] = {w: {names[j]: float(avg[j, k]) for j in range(f.order)} for k, w in enumerate(words)}
    return assoc, means


# ---------------------------------------------------------------------------------------------- wrappers
_MISSING = object()


def _build_wrapper(base_model: Any, tokenizer: Any, factors: Sequence[WordSwap], kwargs: Mapping[str, Any]) -> Any:
    """``from_base`` with ``kwargs``; raises ``ValueError`` when the installed wrapper ignores or rejects them."""
    from ..models.causal_lm import EquivariantModelForCausalLM

    try:
        model = EquivariantModelForCausalLM.from_base(base_model, tokenizer=tokenizer, groups=list(factors), **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(str(err)) from err
    # from_base forwards unknown keywords to from_pretrained, which an instance never calls: check they took effect.
    ignored = [k for k, v in kwargs.items() if getattr(model.config, k, _MISSING) != v]
    if ignored:
        raise ValueError(f"from_base ignored {', '.join(f'{k}={kwargs[k]!r}' for k in ignored)}")
    return model.eval()


def _build_strategies(
    base_model: Any, tokenizer: Any, factors: Sequence[WordSwap], names: Sequence[str],
    extra: Mapping[str, Any],
) -> tuple[dict[str, tuple[Any, Any]], dict[str, str]]:
    """``{name: (model, reversed-sets model)}`` (base: the base twice) and ``{skipped name: reason}``."""
    reversed_factors = reversed_word_swaps(factors, tokenizer)
    built: dict[str, tuple[Any, Any]] = {}
    skipped: dict[str, str] = {}
    for name in names:
        if name == "base":
            built[name] = (base_model, base_model)
            continue
        kwargs = {**extra, **STRATEGY_TABLE[name]}
        try:
            built[name] = (_build_wrapper(base_model, tokenizer, factors, kwargs),
                           _build_wrapper(base_model, tokenizer, reversed_factors, kwargs))
        except ValueError as err:
            reason = f"not available in this version ({err})"
            logger.warning("strategy %r skipped: %s", name, reason)
            skipped[name] = reason
    return built, skipped


def _check_strategy_names(strategies: Sequence[str]) -> list[str]:
    names = list(dict.fromkeys(strategies))
    unknown = [s for s in names if s != "base" and s not in STRATEGY_TABLE]
    if unknown or not names:
        raise ValueError(f"unknown strategy {unknown}; choose from {['base', *STRATEGY_TABLE]}")
    return names


# ---------------------------------------------------------------------------------------------- evaluation
@dataclass
class _Setup:
    """Everything the per-strategy loop needs, computed once."""

    factors: list[WordSwap]
    action: TokenPermutationAction
    parts: torch.Tensor
    prompts: list[PromptItem]
    probes: list[PromptItem]
    ids: list[torch.Tensor]
    members: list[list[int | None]]
    targets: list[str]
    target_ids: torch.Tensor | None
    reference: list[torch.Tensor]
    associations: dict[str, dict[str, int | None]]
    shards: Shards = field(default_factory=Shards)

    def map(self, fn: Callable[[int], Any], progress: bool, desc: str) -> list[Any]:
        """``fn(n)`` for every prompt ``n``, split between the launched processes (tensors come back on the model's
        device); a progress bar on the main process."""
        device = self.ids[0].device if self.ids else torch.device("cpu")
        bar = tqdm(total=len(self.shards.mine(len(self.prompts))), desc=desc,
                   disable=not progress or not self.shards.is_main)

        def one(n: int) -> Any:
            out = fn(n)
            bar.update()
            return _to_device(out, "cpu") if self.shards.distributed else out

        results = self.shards.map(one, list(range(len(self.prompts))))
        bar.close()
        return [_to_device(r, device) for r in results] if self.shards.distributed else results


def _to_device(value: Any, device: Any) -> Any:
    if torch.is_tensor(value):
        return value.to(device)
    if isinstance(value, tuple):
        return tuple(_to_device(v, device) for v in value)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


def _reference_pass(base_model: Any, setup: _Setup,
                    progress: bool) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per prompt: the base model's orbit average, and its renormalised target probabilities per element."""
    prob_fn = lambda x: next_token_probs(base_model, x)  # noqa: E731

    def one(n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        probs, pulled = _element_batch(prob_fn, setup.action, setup.ids[n])
        return pulled.mean(0), None if setup.target_ids is None else _renormalised(probs[:, setup.target_ids])

    results = setup.map(one, progress, "orbit average")
    return [r for r, _ in results], [v for _, v in results if v is not None]


def _renormalised(p: torch.Tensor) -> torch.Tensor:
    return p / p.sum(-1, keepdim=True).clamp_min(1e-30)


def _associations(spec: TargetSpec, setup: _Setup, variants: list[torch.Tensor],
                  margin: float) -> tuple[dict[str, dict[str, int | None]], dict[str, Any]]:
    """Declared associations (member indices) plus estimates for undeclared factors, and their metadata."""
    source: dict[str, str] = {}
    assoc: dict[str, dict[str, int | None]] = {}
    for f in setup.factors:
        if spec.declared(f.name):
            assoc[f.name] = {w: (None if spec.associations.get(w, {}).get(f.name) is None
                                 else member_index(f, spec.associations[w][f.name])) for w in setup.targets}
            source[f.name] = "file"
    unknown = {k for a in spec.associations.values() for k in a} - {f.name for f in setup.factors}
    if unknown:
        logger.warning("targets file names factors that are not in the group: %s (ignored)", sorted(unknown))
    index = [i for i, f in enumerate(setup.factors) if f.name not in assoc]
    estimates: dict[str, Any] = {}
    if index and variants:
        est, estimates = estimate_associations(variants, [[m[i] for i in index] for m in setup.members],
                                               setup.parts[:, index], [setup.factors[i] for i in index],
                                               setup.targets, margin)
        for name, a in est.items():
            assoc[name], source[name] = a, "estimated from the base model"
    members = {f.name: factor_members(f) for f in setup.factors}
    named = {name: {w: None if j is None else members[name][j] for w, j in a.items()} for name, a in assoc.items()}
    return assoc, {"associations": named, "association_source": source, "association_estimates": estimates}


def _target_dict(setup: _Setup, probs: torch.Tensor) -> dict[str, float]:
    p = _renormalised(probs[setup.target_ids])
    return dict(zip(setup.targets, p.tolist()))


def _evaluate_prompt(model: Any, reversed_model: Any, is_base: bool, setup: _Setup,
                     n: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Metrics of one strategy at prompt ``n``; also returns its renormalised target probabilities per element."""
    ids = setup.ids[n]
    p = next_token_probs(model, ids)[0]
    rows = model.last_row_count if not is_base else 1
    probs, pulled = _element_batch(lambda x: next_token_probs(model, x), setup.action, ids)
    row: dict[str, Any] = {
        "prompt": setup.prompts[n].prompt,
        "rows": rows,
        "counterfactual_gap": float(total_variation(pulled, pulled[0]).max()),
        "tv_to_orbit_average": float(total_variation(p, setup.reference[n])),
        "anchor_sensitivity": None if is_base else float(total_variation(p, next_token_probs(reversed_model, ids)[0])),
    }
    variants = torch.empty(0)
    if setup.target_ids is not None:
        row["targets"] = _target_dict(setup, p)
        row["balance"] = target_balance(row["targets"], setup.associations, setup.factors)
        variants = _renormalised(probs[:, setup.target_ids])
    return row, variants


def _demographic_targets(setup: _Setup, variants: list[torch.Tensor]) -> dict[str, dict[str, dict[str, float]]]:
    """Per factor and member: mean target distribution over the prompts containing the factor, after swapping only
    that factor's words to the member (the per-demographic distributions that the plots show)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    index = {tuple(r): k for k, r in enumerate(setup.parts.tolist())}
    for i, f in enumerate(setup.factors):
        rows = [(v, m[i]) for v, m in zip(variants, setup.members) if m[i] is not None]
        if not rows:
            continue
        out[f.name] = {}
        for j, name in enumerate(factor_members(f)):
            picks = []
            for v, m in rows:
                shift = [0] * len(setup.factors)
                shift[i] = (j - m) % f.order
                picks.append(v[index[tuple(shift)]])
            out[f.name][name] = dict(zip(setup.targets, torch.stack(picks).mean(0).tolist()))
    return out


def _agreement(model: Any, tokenizer: Any, probes: Sequence[PromptItem], device: torch.device) -> dict[str, Any]:
    """``P(agree) - P(disagree)`` per agreement probe (full vocabulary, no renormalisation) and their mean."""
    items = []
    for item in probes:
        ids = tokenizer(item.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device)
        p = next_token_probs(model, ids)[0]
        a = float(p[_single_token(tokenizer, item.agree, "agreeing token")])
        d = float(p[_single_token(tokenizer, item.disagree, "disagreeing token")])
        items.append({"prompt": item.prompt, "agree": item.agree, "disagree": item.disagree, "p_agree": a,
                      "p_disagree": d, "margin": a - d})
    mean = sum(i["margin"] for i in items) / len(items) if items else None
    return {"mean_margin": mean, "items": items}


def _summary(rows: list[dict[str, Any]], key: str) -> dict[str, float] | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return {"mean": sum(vals) / len(vals), "max": max(vals)} if vals else None


def _mean_balance(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Average each factor's per-member masses (and difference) over prompts."""
    if not rows or "balance" not in rows[0]:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for factor, first in rows[0]["balance"].items():
        members = {m: sum(r["balance"][factor]["members"][m] for r in rows) / len(rows) for m in first["members"]}
        entry: dict[str, Any] = {"members": members}
        if "difference" in first:
            entry["difference"] = sum(r["balance"][factor]["difference"] for r in rows) / len(rows)
            entry["difference_label"] = first["difference_label"]
        out[factor] = entry
    return out


def _evaluate_strategy(name: str, models: tuple[Any, Any], setup: _Setup, tokenizer: Any, progress: bool,
                       sampling: dict[str, Any]) -> dict[str, Any]:
    """All metrics of one strategy."""
    model, reversed_model = models
    is_base = name == "base"
    results = setup.map(lambda n: _evaluate_prompt(model, reversed_model, is_base, setup, n), progress, name)
    rows, variants = [r for r, _ in results], [v for _, v in results]
    device = setup.ids[0].device if setup.ids else torch.device("cpu")
    result: dict[str, Any] = {
        "from_base_kwargs": None if is_base else STRATEGY_TABLE[name],
        "copies_per_row": 1 if is_base else int(model.copies_per_row),
        "rows_per_token": sum(r["rows"] for r in rows) / len(rows) if rows else None,
        "counterfactual_gap": _summary(rows, "counterfactual_gap"),
        "tv_to_orbit_average": _summary(rows, "tv_to_orbit_average"),
        "anchor_sensitivity": _summary(rows, "anchor_sensitivity"),
        "balance": _mean_balance(rows),
        "agreement": _agreement(model, tokenizer, setup.probes, device),
        "prompts": rows,
    }
    if setup.target_ids is not None and rows:
        result["demographic_targets"] = _demographic_targets(setup, variants)
    if sampling.get("samples", 0) > 0 and setup.prompts:
        result["samples"] = _sample_strategy(model, tokenizer, setup, sampling, progress, name)
    return result


def _sample_strategy(model: Any, tokenizer: Any, setup: _Setup, sampling: dict[str, Any], progress: bool,
                     name: str) -> dict[str, Any]:
    """Sampled continuations per demographic variant, classifier scores and demographic representation."""
    def one(n: int) -> dict[str, Any]:
        sampled = sample_continuations(
            model, tokenizer, setup.action, setup.factors, setup.ids[n], setup.parts,
            samples=sampling["samples"], max_new_tokens=sampling["max_new_tokens"], seed=sampling["seed"] + n,
            top_k=sampling["top_k"])
        sampled["prompt"] = setup.prompts[n].prompt
        return sampled

    per_prompt = setup.map(one, progress, f"{name} samples")
    return summarise_samples(per_prompt, setup.factors, sampling.get("classifier"), sampling["score_text"])


def evaluate_fairness(
    base_model: Any,
    tokenizer: Any,
    groups: Sequence[str | WordSwap],
    prompts: str | os.PathLike | Sequence[str | Mapping[str, str] | PromptItem],
    targets: str | os.PathLike | Sequence[str] | Mapping[str, Any] | TargetSpec | None = None,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    *,
    samples: int = 0,
    max_new_tokens: int = 20,
    top_k: int = 0,
    seed: int = 0,
    classifier: str | Callable[[list[str]], list[dict[str, float]]] | None = None,
    score_text: str = "continuation",
    association_margin: float = 0.0,
    wrapper_kwargs: Mapping[str, Any] | None = None,
    progress: bool = True,
    model_name: str | None = None,
    shards: Shards | None = None,
) -> FairnessReport:
    """Measure every strategy in ``strategies`` on ``prompts`` and return a :class:`FairnessReport`.

    Args:
        base_model: a causal LM (the ``base`` row; every other strategy wraps it with ``from_base``).
        groups: built-in word-set names or ``WordSwap`` factors (the product group).
        prompts: prompt items (see :func:`load_prompts`); agreement probes are scored only for the agreement margin.
        targets: target words with optional associations (see :func:`load_targets`); ``None`` skips the balance.
        strategies: names from :data:`STRATEGY_TABLE` plus ``"base"``; unsupported ones are skipped with a warning.
        samples: continuations sampled per demographic variant of each prompt (0: no sampling metrics).
        classifier: a ``text-classification`` model name/folder, or a callable ``texts -> [{label: score}]``.
        score_text: ``"continuation"`` (default: the classifier never sees the prompt's demographic words) or
            ``"full"`` (prompt variant + continuation).
        association_margin: estimated associations need the best member to beat the runner-up by this ratio.
        wrapper_kwargs: extra ``from_base`` arguments for every wrapper (e.g. ``{"max_rows": 64}``).
        shards: the processes to split the prompts between (``accelerate launch``, see
            :mod:`hf_equivariant.eval.distributed`); every process returns the same report.
    """
    names = _check_strategy_names(strategies)
    if samples < 0 or max_new_tokens < 1:
        raise ValueError("samples must be >= 0 and max_new_tokens >= 1")
    if score_text not in ("continuation", "full"):
        raise ValueError("score_text must be 'continuation' or 'full'")
    if classifier is not None and samples == 0:
        raise ValueError("a classifier scores sampled continuations: set samples > 0")
    items = load_prompts(prompts)
    spec = targets if isinstance(targets, TargetSpec) or targets is None else load_targets(targets)
    factors = resolve_factors(groups, tokenizer)
    device = next(base_model.parameters()).device
    built, skipped = _build_strategies(base_model, tokenizer, factors, names, wrapper_kwargs or {})
    action = _build_wrapper(base_model, tokenizer, factors, {"strategy": "full"}).action
    setup = _make_setup(tokenizer, factors, action, items, spec, device)
    setup.shards = shards or Shards()
    setup.reference, variants = _reference_pass(base_model, setup, progress)
    meta = _meta(model_name or getattr(base_model.config, "_name_or_path", None), factors, action, setup, names,
                 skipped, samples, max_new_tokens, top_k, seed, classifier, score_text)
    if spec is not None:
        setup.associations, assoc_meta = _associations(spec, setup, variants, association_margin)
        meta.update(assoc_meta)
    sampling = {"samples": samples, "max_new_tokens": max_new_tokens, "top_k": top_k, "seed": seed,
                "score_text": score_text, "classifier": _classifier_fn(classifier)}
    results = {name: _evaluate_strategy(name, built[name], setup, tokenizer, progress, sampling)
               for name in names if name in built}
    reference = _reference_summary(setup)
    return FairnessReport(meta=meta, strategies=results, reference=reference)


def _make_setup(tokenizer: Any, factors: list[WordSwap], action: TokenPermutationAction, items: list[PromptItem],
                spec: TargetSpec | None, device: torch.device) -> _Setup:
    prompts = [i for i in items if not i.is_agreement]
    ids = [tokenizer(i.prompt, return_tensors="pt", add_special_tokens=False)["input_ids"].to(device) for i in prompts]
    if any(x.shape[-1] == 0 for x in ids):
        raise ValueError("empty prompt")
    target_ids = None
    if spec is not None:
        target_ids = torch.tensor(_target_ids(tokenizer, spec.words, factors), device=device)
    parts = action.group.elements.cpu()
    return _Setup(factors=factors, action=action, parts=parts, prompts=prompts,
                  probes=[i for i in items if i.is_agreement], ids=ids,
                  members=[prompt_members(factors, x.cpu()) for x in ids],
                  targets=list(spec.words) if spec else [], target_ids=target_ids, reference=[], associations={})


def _classifier_fn(classifier: Any) -> Callable[[list[str]], list[dict[str, float]]] | None:
    """A name/folder becomes a ``text-classification`` pipeline returning every label's score."""
    if classifier is None or callable(classifier):
        return classifier
    from transformers import pipeline

    pipe = pipeline("text-classification", model=str(classifier), top_k=None)
    return lambda texts: classifier_scores(texts, pipe)


def _reference_summary(setup: _Setup) -> dict[str, Any]:
    """The orbit average's own target distribution and balance per prompt (what ``full`` should reproduce)."""
    if setup.target_ids is None:
        return {}
    rows = []
    for item, ref in zip(setup.prompts, setup.reference):
        t = _target_dict(setup, ref)
        rows.append({"prompt": item.prompt, "targets": t,
                     "balance": target_balance(t, setup.associations, setup.factors)})
    return {"balance": _mean_balance(rows), "prompts": rows}


def _meta(model: str | None, factors: list[WordSwap], action: TokenPermutationAction, setup: _Setup,
          names: list[str], skipped: dict[str, str], samples: int, max_new_tokens: int, top_k: int, seed: int,
          classifier: Any, score_text: str) -> dict[str, Any]:
    from .._version import __version__

    return {
        "model": model,
        "hf_equivariant_version": __version__,
        "groups": [{"name": f.name, "order": f.order, "members": factor_members(f)} for f in factors],
        "group_order": int(action.group.order),
        "prompts": [i.prompt for i in setup.prompts],
        "agreement_probes": len(setup.probes),
        "targets": setup.targets,
        "strategies_requested": names,
        "skipped": skipped,
        "samples": samples,
        "max_new_tokens": max_new_tokens,
        "top_k": top_k,
        "seed": seed,
        "classifier": None if classifier is None else (classifier if isinstance(classifier, str) else "callable"),
        "score_text": score_text,
    }
