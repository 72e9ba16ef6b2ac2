"""The action protocol: how a group moves one kind of data, and how the executor asks it to.

An action pairs a :class:`~hf_equivariant.groups.Group` with its effect on model inputs (``transform_inputs``), on
outputs that must be equivariant (``transform_outputs``; the identity for invariant outputs), and two ways of
removing the action of some factors from an input: ``canonicalise`` (a representative per orbit of those factors,
used by design 2 branches) and ``orient`` (the element that moves each input to a canonical pose, used by the
``canonical`` strategy). Plans say which of these to use; the executor calls them; wrappers never do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import torch

from ..groups import Group

__all__ = ["GroupAction", "TrivialAction", "Orientation"]


@dataclass
class Orientation:
    """Where :meth:`GroupAction.orient` puts each input.

    Attributes:
        input_elements: ``[N]`` element applied to each input row (its canonical pose).
        output_elements: ``[N]`` or ``[N, T]`` element each output (per position for sequences) is mapped back by
            (its inverse is applied). For causal sequences position ``t`` depends only on tokens up to ``t``.
        unresolved: ``[N, (T), F]`` factors the orientation could not fix (no token of the factor yet); the output
            is symmetrised over them. ``None`` when every factor is resolved.
    """

    input_elements: torch.Tensor
    output_elements: torch.Tensor
    unresolved: torch.Tensor | None = None


class GroupAction(ABC):
    """A group acting on one kind of tensor (token ids, images, feature vectors)."""

    #: The group that acts.
    group: Group
    #: Whether :meth:`orient` is implemented (the ``canonical`` strategy needs it).
    can_orient: bool = False

    @property
    def order(self) -> int:
        return self.group.order

    @property
    def factor_orders(self) -> tuple[int, ...]:
        return self.group.factor_orders

    @property
    def num_factors(self) -> int:
        return len(self.factor_orders)

    def element_parts(self, element: int | torch.Tensor) -> torch.Tensor:
        """Factor indices of group element(s) (one column for a group without factors)."""
        if torch.is_tensor(element):
            return self.group.elements.to(element.device)[element.long()]
        return self.group.elements[int(element)].clone()

    def inverse_parts(self, parts: torch.Tensor) -> torch.Tensor:
        """Factor-wise inverses of elements given as factor indices ``[..., N]``."""
        return self.group.inverse_parts(parts)

    @abstractmethod
    def transform_inputs(self, x: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``g . x``: one element for all of ``x`` (an int) or one per leading row (``elements [B]``)."""

    def transform_outputs(self, y: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """``g . y`` for an output of the same kind; invariant outputs are unchanged (the default)."""
        return y

    def canonicalise(self, x: torch.Tensor, factor_mask: torch.Tensor, **context: Any) -> torch.Tensor:
        """A representative of ``x``'s orbit under the factors in ``factor_mask`` (``[F]`` bool).

        It must be invariant to those factors and equivariant to the others (design 2's ``Inv_{-i}``).
        """
        raise NotImplementedError(f"{type(self).__name__} cannot canonicalise inputs")

    def orient(self, x: torch.Tensor, **context: Any) -> Orientation:
        """Per input row, the element ``k`` with ``k(g.x) = k(x) g^-1``, so ``k . x`` is a canonical pose."""
        raise NotImplementedError(f"{type(self).__name__} cannot orient inputs")

    def symmetrise_outputs(self, y: torch.Tensor, factor_mask: torch.Tensor) -> torch.Tensor:
        """Average ``y`` over the subgroup of the factors in ``factor_mask``; invariant outputs are unchanged."""
        return y

    def element_label(self, element: int) -> str:
        """Readable name of an element."""
        return self.group.label(int(element))


class TrivialAction(GroupAction):
    """The one-element group acting on any tensor by doing nothing (an input with no symmetry)."""

    needs_square = False

    def __init__(self, name: str = "id") -> None:
        from ..groups import trivial_group

        self.group = trivial_group(name)

    def check_shape(self, height: int, width: int) -> None:
        """Any shape is fine."""

    def transform_inputs(self, x: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        return x

    def transform_outputs(self, y: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        return y

    def apply(self, x: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """The identity: ``x`` unchanged."""
        return x

    def orbit(self, x: torch.Tensor, elements: Any = None) -> torch.Tensor:
        """``[1, B, ...]``: the only copy of ``x``."""
        return x.unsqueeze(0)

    def canonicalise(self, x: torch.Tensor, factor_mask: torch.Tensor, **context: Any) -> torch.Tensor:
        return x

    def __repr__(self) -> str:
        return f"TrivialAction({self.group.name!r})"
