"""``check_equivariance``: measure how far a wrapped model is from ``f(g.x) == g.f(x)``, element by element.

Works with any model that implements the small protocol below (every wrapper in this package does):

- ``equivariance_group_order() -> int``: order of the (product) group;
- ``equivariance_element_label(element) -> str``: a readable name of an element;
- ``equivariance_transform_inputs(inputs, element) -> dict``: ``g.x`` for model inputs given as a dict;
- ``equivariance_output(inputs) -> Tensor``: the output that must be equivariant (logits, scores, ...);
- ``equivariance_transform_outputs(output, element) -> Tensor``: ``g.y`` (identity for invariant outputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["EquivarianceReport", "check_equivariance"]


@dataclass
class EquivarianceReport:
    """Largest absolute error ``|f(g.x) - g.f(x)|`` for each checked group element."""

    errors: dict[str, float] = field(default_factory=dict)
    elements: list[int] = field(default_factory=list)
    sampled: bool = False

    @property
    def max_error(self) -> float:
        return max(self.errors.values(), default=0.0)

    def passed(self, atol: float = 1e-5) -> bool:
        """Whether every checked element is within ``atol``."""
        return self.max_error <= atol

    def __str__(self) -> str:
        head = f"max error {self.max_error:.3e} over {len(self.errors)} element(s)" + (" (sampled)" if self.sampled else "")
        rows = [f"  {label:<40} {err:.3e}" for label, err in self.errors.items()]
        return "\n".join([head, *rows])


def check_equivariance(
    model: Any,
    inputs: Mapping[str, Any],
    elements: Sequence[int] | None = None,
    max_elements: int = 64,
    seed: int = 0,
) -> EquivarianceReport:
    """Check ``model(g.x) == g.model(x)`` for every group element, or a seeded sample of ``max_elements``.

    ``inputs`` is what the model's forward takes (for example a tokenizer's output). Returns an
    :class:`EquivarianceReport`; nothing is asserted, so it is usable in user code and in tests alike.
    """
    for name in ("equivariance_group_order", "equivariance_output", "equivariance_transform_inputs",
                 "equivariance_transform_outputs", "equivariance_element_label"):
        if not hasattr(model, name):
            raise TypeError(f"{type(model).__name__} does not implement {name}(); wrap it with hf_equivariant first")
    order = int(model.equivariance_group_order())
    if isinstance(max_elements, bool) or not isinstance(max_elements, int) or max_elements < 1:
        raise ValueError(f"max_elements must be a positive integer, got {max_elements!r}: a check of no element "
                         "proves nothing")
    if elements is not None and len(elements) == 0:
        raise ValueError("elements is empty: a check of no element proves nothing")
    sampled = False
    if elements is None:
        if order <= max_elements:
            elements = list(range(order))
        else:
            generator = torch.Generator().manual_seed(seed)
            elements = sorted(torch.randperm(order, generator=generator)[:max_elements].tolist())
            sampled = True
    inputs = dict(inputs)
    report = EquivarianceReport(elements=list(elements), sampled=sampled)
    with torch.no_grad():
        reference = model.equivariance_output(inputs)
        for element in elements:
            moved = model.equivariance_output(model.equivariance_transform_inputs(inputs, int(element)))
            expected = model.equivariance_transform_outputs(reference, int(element))
            error = (moved.float() - expected.float()).abs().max().item() if moved.numel() else 0.0
            report.errors[model.equivariance_element_label(int(element))] = error
    return report
