"""Per-input groups for multi-input networks: a name per input (``"rot90"``, ``"flip"``, ``"id"``, ...) -> an action.

Each input of a multi-input network has its own symmetry. This module turns the names used in configs into action
objects with one small interface (``group``, ``order``, ``apply``, ``orbit``, ``check_shape``), so layers never
care whether an input is rotated, flipped or left alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..actions.image import ImageGroupAction
from ..groups import FiniteGroup, ProductGroup, trivial_group

__all__ = ["IdentityAction", "INPUT_GROUP_NAMES", "input_group", "input_groups", "product_of_inputs", "InputAction"]


class IdentityAction:
    """The one-element group acting on any tensor by doing nothing (an input with no symmetry)."""

    needs_square = False

    def __init__(self) -> None:
        self.group: FiniteGroup = trivial_group("id")

    @property
    def order(self) -> int:
        return 1

    def check_shape(self, height: int, width: int) -> None:
        """Any shape is fine."""

    def apply(self, x: torch.Tensor, elements: torch.Tensor | int) -> torch.Tensor:
        """The identity: returns ``x`` unchanged (elements must all be 0)."""
        return x

    def orbit(self, x: torch.Tensor, elements: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
        """``[1, B, ...]``: the only copy of ``x``."""
        return x.unsqueeze(0)

    def __repr__(self) -> str:
        return "IdentityAction()"


InputAction = ImageGroupAction | IdentityAction

# Config names -> the image transforms generating the group (empty: identity group).
_TRANSFORMS: dict[str, tuple[str, ...]] = {
    "id": (),
    "rot90": ("rot90",),
    "flip": ("flip",),
    "hflip": ("hflip",),
    "vflip": ("vflip",),
    "rot90_flip": ("rot90", "flip"),
    "rot90_vflip": ("rot90", "vflip"),
}
INPUT_GROUP_NAMES: tuple[str, ...] = tuple(_TRANSFORMS)
_CACHE: dict[str, InputAction] = {}


def input_group(spec: str | InputAction) -> InputAction:
    """The action for one input, from a name in :data:`INPUT_GROUP_NAMES` or an action object (returned as is).

    Named actions are shared process-wide so their index tables are built once per image size.
    """
    if not isinstance(spec, str):
        if not all(hasattr(spec, name) for name in ("group", "apply", "orbit", "check_shape")):
            raise TypeError(f"expected a group name or an image group action, got {type(spec).__name__}")
        return spec
    if spec not in _TRANSFORMS:
        raise ValueError(f"unknown input group {spec!r}; known: {list(INPUT_GROUP_NAMES)}")
    if spec not in _CACHE:
        transforms = _TRANSFORMS[spec]
        _CACHE[spec] = ImageGroupAction(list(transforms)) if transforms else IdentityAction()
    return _CACHE[spec]


def input_groups(specs: Sequence[str | InputAction]) -> list[InputAction]:
    """Actions for several inputs; at least one input is required."""
    if isinstance(specs, str) or len(specs) == 0:
        raise ValueError(f"give one group per input as a list, e.g. ['rot90', 'flip'], got {specs!r}")
    return [input_group(s) for s in specs]


def product_of_inputs(actions: Sequence[InputAction]) -> ProductGroup:
    """The product G1 x ... x GN acting factor-wise on the inputs (factor i is renamed ``input{i}:<name>``)."""
    factors = [
        FiniteGroup(f"input{i}:{a.group.name}", a.group.mul, tuple(f"in{i}:{label}" for label in a.group.labels))
        for i, a in enumerate(actions)
    ]
    return ProductGroup(factors)
