"""``ConvergenceHook``: when is a system done?

Criteria are evaluated per system on the device, every step, so converged
systems stop moving at once; the host learns about them (to fire
``ON_CONVERGE`` and to end ``run``) every ``frequency`` steps, which is the
only device→host sync an optimizer's step needs. :class:`ConvergenceTracking`
is that bookkeeping, which every engine mixes in.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.variable_cell import generalized_max_force, has_cell_filter, residual_stress
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.segment import segment_max
from nvalchemi_ase.ops.thermo import max_force

Quantity = Callable[[Batch], torch.Tensor]


def _fmax(batch: Batch) -> torch.Tensor:
    if has_cell_filter(batch):  # ASE's test on a filter: atoms and cell rows
        return generalized_max_force(batch)
    return max_force(batch.forces, batch.batch_idx, batch.num_graphs, batch.ptr)


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


class ConvergenceTracking:
    """An engine's per-system convergence: which systems are done, found on the device every step and
    read on the host every ``frequency`` steps (``ON_CONVERGE``, the end of ``run``).

    :class:`~nvalchemi_ase.dynamics.BaseDynamics` mixes it in; it provides the attributes below and
    ``_call_hooks``.
    """

    batch: Batch | None
    step_count: int
    convergence_hook: ConvergenceHook | None
    converged: torch.Tensor | None
    _newly_converged: torch.Tensor | None
    done: bool
    _call_hooks: Callable[..., None]

    def set_convergence(self, convergence_hook: Any) -> None:
        """Replace the convergence criteria (a ConvergenceHook, its keyword dict, or an ``fmax`` in eV/Å).

        With a batch bound, every system is judged anew now: a system that
        no longer passes moves again. ``None``: systems never converge.
        """
        if isinstance(convergence_hook, int | float) and not isinstance(convergence_hook, bool):
            convergence_hook = ConvergenceHook.from_fmax(float(convergence_hook))
        self.convergence_hook = as_convergence_hook(convergence_hook)
        if self.batch is None or self.converged is None:
            return
        if self.convergence_hook is None:
            self.converged = torch.zeros_like(self.converged)
        else:
            self.converged = self.convergence_hook.evaluate(self.batch)
        self._newly_converged = torch.zeros_like(self.converged)
        self.done = False

    def all_converged(self) -> bool:
        """Whether every system of the bound batch has converged (reads the device: a sync)."""
        if self.converged is None or self.convergence_hook is None:
            return False
        self.done = bool(self.converged.all())
        return self.done

    def _mark_converged(self, batch: Batch) -> tuple[int, int] | None:
        """Evaluate the criteria on the device; remember newly converged systems (no sync).

        On a CPU, one kernel updates the flags and returns ``(any_new, all_done)`` as well
        (:mod:`~nvalchemi_ase.ops.tracking_kernel`); elsewhere None: the caller asks the device."""
        assert self.convergence_hook is not None and self.converged is not None
        assert self._newly_converged is not None
        now = self.convergence_hook.evaluate(batch)
        if now.device.type == "cpu":
            kernel = _tracking_kernel()
            if kernel.fits(now, self.converged, self._newly_converged):
                return _tracker().mark(now, self.converged, self._newly_converged)
        self._newly_converged |= now & ~self.converged
        self.converged |= now
        return None

    def _check_convergence(self, batch: Batch) -> None:
        """Fire ON_CONVERGE for systems that converged since the last check; stop when all have."""
        if self.convergence_hook is None:
            return
        answers = self._mark_converged(batch)
        if self.step_count % self.convergence_hook.frequency != 0:
            return
        assert self._newly_converged is not None and self.converged is not None
        if answers is not None:
            any_new, all_done = answers
        else:
            any_new, all_done = torch.stack([self._newly_converged.any(), self.converged.all()]).tolist()
        if any_new:
            newly, self._newly_converged = self._newly_converged, torch.zeros_like(self._newly_converged)
            self._call_hooks(DynamicsStage.ON_CONVERGE, batch, converged_mask=newly)
        self.done = bool(all_done)


@functools.cache
def _tracking_kernel() -> Any:
    """:mod:`nvalchemi_ase.ops.tracking_kernel`, imported on first use (it loads warp)."""
    from nvalchemi_ase.ops import tracking_kernel

    return tracking_kernel


def _tracker() -> Any:
    """This thread's :class:`~nvalchemi_ase.ops.tracking_kernel.Tracker` (its answers are read right
    after its kernel: engines stepping in other threads have their own)."""
    tracker = getattr(_THREAD, "tracker", None)
    if tracker is None:
        tracker = _THREAD.tracker = _tracking_kernel().Tracker()
    return tracker


_THREAD = threading.local()


def as_convergence_hook(value: Any) -> Any:
    """A ConvergenceHook (or None) from a hook or its keyword dict; TypeError otherwise."""
    if isinstance(value, dict):
        value = ConvergenceHook(**value)
    if value is not None and not isinstance(value, ConvergenceHook):
        raise TypeError(f"convergence_hook must be a ConvergenceHook or a dict, got {value!r}")
    return value
