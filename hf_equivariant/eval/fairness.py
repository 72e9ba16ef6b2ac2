"""Counterfactual fairness of next-token distributions under word-swap groups.

The counterfactual gap of a model at a prompt ``x`` is the total variation between ``P(. | x)`` and
``g^-1 . P(. | g.x)``, worst over the group: 0 exactly when swapping the demographic words of the prompt swaps
the continuation's distribution in the same way (what the equivariant wrapper guarantees).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..actions.tokens import TokenPermutationAction

__all__ = ["counterfactual_gaps"]


def counterfactual_gaps(
    logits_fn: Callable[[torch.Tensor], torch.Tensor], action: TokenPermutationAction, input_ids: torch.Tensor
) -> torch.Tensor:
    """Total variation between ``P(.|x)`` and ``g^-1.P(.|g.x)`` for every group element ``g`` (``[|G|]``).

    ``logits_fn`` maps ``[B, T]`` ids to ``[B, T, V]`` logits (a base model or a wrapper); ``input_ids`` is one
    prompt ``[1, T]`` or ``[T]``. All ``|G|`` transformed prompts run in one batch.
    """
    ids = input_ids.reshape(1, -1)
    parts = action.group.elements.to(ids.device)  # [|G|, F], element 0 is the identity
    moved = action.act(ids.expand(parts.shape[0], -1), parts)
    with torch.no_grad():
        probs = logits_fn(moved)[:, -1].float().softmax(-1)
    maps = action.vocabulary_maps(parts, ids.device, probs.shape[-1])  # w -> g.w
    pulled_back = probs.gather(-1, maps)  # g^-1 . P(.|g.x)
    return 0.5 * (pulled_back - pulled_back[0]).abs().sum(-1)
