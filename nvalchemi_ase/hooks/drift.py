"""``EnergyDriftMonitorHook``: watch the total energy of NVE runs, warn or stop on drift.

The first firing stores each system's total energy ``E_ref`` (potential, plus
kinetic by default) and the step; later firings compute ``|E − E_ref|`` per
system, normalised by the chosen metric, and compare the worst system with the
threshold. A slot whose ``system_id`` changed (a refilled system) takes a new
reference at that firing, so inflight batching does not look like drift.
"""

from __future__ import annotations

import math
import warnings

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.thermo import kinetic_energy

METRICS = {"absolute": "eV", "per_atom": "eV/atom", "per_atom_per_step": "eV/atom/step"}
"""Drift metrics and their units."""
ACTIONS = ("warn", "raise")


class EnergyDriftWarning(UserWarning):
    """The energy drift of some system exceeded the monitor's threshold."""


class EnergyDriftError(RuntimeError):
    """The energy drift of some system exceeded the monitor's threshold (``action="raise"``)."""


class EnergyDriftMonitorHook:
    """Compare each system's total energy with its reference at ``AFTER_STEP``.

    Parameters
    ----------
    threshold
        Largest drift allowed, in the metric's unit (> 0).
    metric
        ``"absolute"``: ``|E − E_ref|`` in eV; ``"per_atom"``: divided by the
        system's atom count (eV/atom); ``"per_atom_per_step"``: further divided
        by the number of steps since the reference was taken (eV/atom/step).
    action
        ``"warn"``: :class:`EnergyDriftWarning`; ``"raise"``: :class:`EnergyDriftError`.
        The message names the step, the worst drift and the systems over the threshold.
    frequency
        Fire when ``step_count % frequency == 0``.
    include_kinetic
        Total energy = potential + kinetic (NVE's conserved quantity); else potential only.

    Attributes
    ----------
    drift
        ``[B]`` the last drift per system, in the metric's unit (device tensor).
    reference, reference_step
        ``[B]`` the reference total energy (eV) and the step it was taken at.

    Notes
    -----
    One device→host sync per firing (the worst drift); a second only when the
    threshold is exceeded, to name the systems.
    """

    stage = DynamicsStage.AFTER_STEP

    def __init__(
        self,
        threshold: float,
        metric: str = "per_atom_per_step",
        action: str = "warn",
        frequency: int = 1,
        include_kinetic: bool = True,
    ) -> None:
        if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not threshold > 0.0:
            raise ValueError(f"threshold must be a positive number, got {threshold!r}")
        if not math.isfinite(threshold):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        if metric not in METRICS:
            raise ValueError(f"metric must be one of {tuple(METRICS)}, got {metric!r}")
        if action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}, got {action!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
        self.threshold = float(threshold)
        self.metric = metric
        self.action = action
        self.frequency = frequency
        self.include_kinetic = bool(include_kinetic)
        self.drift: torch.Tensor | None = None
        self.reference: torch.Tensor | None = None
        self.reference_step: torch.Tensor | None = None
        self._reference_ids: torch.Tensor | None = None

    def total_energy(self, batch: Batch) -> torch.Tensor:
        """``[B]`` potential (+ kinetic) energy per system, eV."""
        total = batch.energy.reshape(-1)
        if self.include_kinetic:
            total = total + kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        return total

    def reset(self) -> None:
        """Forget the reference; the next firing takes a new one."""
        self.drift = self.reference = self.reference_step = self._reference_ids = None

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        total = self.total_energy(batch)
        if self.reference is None or self.reference.shape != total.shape:
            self._take_reference(batch, total, ctx.step_count)
            return
        assert self.reference_step is not None and self._reference_ids is not None
        refilled = batch.system_id != self._reference_ids
        step = torch.full_like(self.reference_step, ctx.step_count)
        self.reference = torch.where(refilled, total, self.reference)
        self.reference_step = torch.where(refilled, step, self.reference_step)
        self._reference_ids = batch.system_id.clone()
        self.drift = self._normalised((total - self.reference).abs(), batch, step - self.reference_step)
        worst = float(self.drift.max())  # the firing's only sync while all is well
        if not worst <= self.threshold:  # NaN energies count as drift too
            self._report(batch, worst, ctx.step_count)

    def _take_reference(self, batch: Batch, total: torch.Tensor, step: int) -> None:
        self.reference = total.detach().clone()
        self.reference_step = torch.full_like(batch.system_id, step)
        self._reference_ids = batch.system_id.clone()
        self.drift = torch.zeros_like(total)

    def _normalised(self, drift: torch.Tensor, batch: Batch, elapsed: torch.Tensor) -> torch.Tensor:
        if self.metric == "absolute":
            return drift
        atoms = (batch.ptr[1:] - batch.ptr[:-1]).to(drift.dtype)
        drift = drift / atoms
        if self.metric == "per_atom_per_step":
            drift = drift / elapsed.clamp(min=1).to(drift.dtype)
        return drift

    def _report(self, batch: Batch, worst: float, step: int) -> None:
        assert self.drift is not None
        over = torch.nonzero(~(self.drift <= self.threshold)).reshape(-1)
        systems = over.tolist()
        ids = batch.system_id[over].tolist()
        unit = METRICS[self.metric]
        message = (
            f"energy drift {worst:.3e} {unit} exceeds threshold {self.threshold:.3e} {unit} at step {step} "
            f"(metric {self.metric!r}) in system(s) {systems} (system_id {ids})"
        )
        if self.action == "raise":
            raise EnergyDriftError(message)
        warnings.warn(EnergyDriftWarning(message), stacklevel=3)

    def __repr__(self) -> str:
        return (
            f"EnergyDriftMonitorHook(threshold={self.threshold}, metric={self.metric!r}, "
            f"action={self.action!r}, "
            f"frequency={self.frequency}, include_kinetic={self.include_kinetic})"
        )


__all__ = ["EnergyDriftError", "EnergyDriftMonitorHook", "EnergyDriftWarning"]
