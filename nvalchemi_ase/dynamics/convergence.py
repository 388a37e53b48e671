"""``ConvergenceHook``: when is a system done?

Criteria are evaluated per system on the device, every step, so converged
systems stop moving at once; the host learns about them (to fire
``ON_CONVERGE`` and to end ``run``) every ``frequency`` steps, which is the
only device→host sync an optimizer's step needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import DynamicsStage
from nvalchemi_ase.dynamics.variable_cell import generalized_max_force, has_cell_filter, residual_stress
from nvalchemi_ase.ops.segment import segment_max
from nvalchemi_ase.ops.thermo import max_force

Quantity = Callable[[Batch], torch.Tensor]


def _fmax(batch: Batch) -> torch.Tensor:
    if has_cell_filter(batch):  # ASE's test on a filter: atoms and cell rows
        return generalized_max_force(batch)
    return max_force(batch.forces, batch.batch_idx, batch.num_graphs)


QUANTITIES: dict[str, Quantity] = {
    "fmax": _fmax,
    "energy": lambda batch: batch.energy.view(-1),
    "cell_stress": residual_stress,
}
"""Named per-system quantities a criterion can test (``[B]`` tensors).

``fmax``: the largest atomic force norm, eV/Å (with a cell filter, the largest
row of the filter's forces, atoms and cell, as ASE tests a filter);
``cell_stress``: with a cell filter, the largest relaxed component of
``stress + p I``, eV/Å³ (0 for systems without one)."""


@dataclass(frozen=True)
class Criterion:
    """A system passes when ``quantity(batch) < threshold`` (strict, as ASE's ``fmax`` test).

    ``key`` names an entry of :data:`QUANTITIES` or a batch field; a per-atom
    field is reduced by the largest per-atom norm in each system, a per-system
    field by its largest component. ``quantity`` (a callable ``batch -> [B]``)
    overrides ``key``.
    """

    key: str = "fmax"
    threshold: float = 0.05
    quantity: Quantity | None = None

    def values(self, batch: Batch) -> torch.Tensor:
        if self.quantity is not None:
            return self.quantity(batch)
        if self.key in QUANTITIES:
            return QUANTITIES[self.key](batch)
        tensor = getattr(batch, self.key, None)
        if tensor is None:
            raise KeyError(
                f"convergence key '{self.key}' is neither a known quantity "
                f"{sorted(QUANTITIES)} nor a batch field"
            )
        if batch.scope_of(self.key).value == "atom":
            norms = tensor.reshape(batch.num_nodes, -1).norm(dim=1)
            return segment_max(norms, batch.batch_idx, batch.num_graphs)
        return tensor.reshape(batch.num_graphs, -1).amax(dim=1)

    def passed(self, batch: Batch) -> torch.Tensor:
        return self.values(batch) < self.threshold


class ConvergenceHook:
    """Per-system convergence: every criterion must pass (they compose with ``&``).

    Parameters
    ----------
    criteria
        A :class:`Criterion`, a dict of its fields, or a list of either.
        ``None`` means ``fmax < 0.05`` eV/Å.
    frequency
        Every how many steps the host checks for newly converged systems
        (fires ``ON_CONVERGE`` and ends ``run`` once all are done). Systems
        stop moving at the step they converge whatever the frequency.
    """

    stage = DynamicsStage.AFTER_STEP

    def __init__(
        self, criteria: Criterion | dict | Sequence[Criterion | dict] | None = None, frequency: int = 1
    ):
        if criteria is None:
            criteria = [Criterion()]
        elif isinstance(criteria, Criterion | dict):
            criteria = [criteria]
        parsed = []
        for item in criteria:
            if isinstance(item, dict):
                item = Criterion(**item)
            if not isinstance(item, Criterion):
                raise TypeError(f"a convergence criterion must be a Criterion or a dict, got {item!r}")
            parsed.append(item)
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
        self.criteria: tuple[Criterion, ...] = tuple(parsed)
        self.frequency = frequency

    @classmethod
    def from_fmax(cls, threshold: float = 0.05, frequency: int = 1) -> ConvergenceHook:
        """Converged when the largest atomic force norm is below ``threshold`` eV/Å."""
        return cls(Criterion("fmax", threshold), frequency=frequency)

    def __and__(self, other: ConvergenceHook) -> ConvergenceHook:
        return ConvergenceHook(
            [*self.criteria, *other.criteria], frequency=min(self.frequency, other.frequency)
        )

    def evaluate(self, batch: Batch) -> torch.Tensor:
        """``[B]`` bool: systems meeting every criterion now."""
        passed = self.criteria[0].passed(batch)
        for criterion in self.criteria[1:]:
            passed = passed & criterion.passed(batch)
        return passed

    def __call__(self, ctx: Any, stage: Any) -> None:
        """As a registered hook it does nothing: pass it as ``convergence_hook=`` to take effect."""

    def __repr__(self) -> str:
        inner = ", ".join(f"{c.key} < {c.threshold}" for c in self.criteria)
        return f"ConvergenceHook({inner}, frequency={self.frequency})"
