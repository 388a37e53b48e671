"""ASE constraints in the look-alikes: which run on the device, and the device hook for them.

Routing, per system (decided once, at construction):

* only ``FixAtoms`` and ``FixCartesian``: on the device. ``FixAtoms`` is the
  frozen atom category (``Batch.from_atoms``) and the engine's
  :class:`~nvalchemi_ase.dynamics.hooks.FreezeAtomsHook`; ``FixCartesian`` is
  :class:`NativeConstraintHook`;
* exactly one ``FixCom``: on the device, :class:`NativeConstraintHook`;
* anything else (``FixBondLengths``, ``Hookean``, ``FixedPlane``,
  ``ExternalForce``, ``FixSubsetCom``, mixtures, ...): the whole list, in
  order, on the host through ASE's own ``adjust_*`` methods
  (:class:`~nvalchemi_ase._lookalike.host_constraints.HostConstraintHook`).

What is applied where follows ASE: MD (``md=True``) moves positions through
the constraints, re-derives velocities from the constrained displacement and
adjusts the final momenta; forces are only changed by constraints that add
energy. Optimizers (``md=False``) project the forces and the positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms, FixCartesian, FixCom

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum

__all__ = ["ConstraintPlan", "NativeConstraintHook", "plan_constraints"]


@dataclass
class ConstraintPlan:
    """Where each system's constraints are applied."""

    fixed_components: np.ndarray | None = None
    """``[N, 3]`` bool: FixCartesian components held (device path), or None."""
    com_systems: np.ndarray | None = None
    """``[B]`` bool: systems whose only constraint is FixCom (device path), or None."""
    host_systems: list[int] = field(default_factory=list)
    """Systems whose constraints ASE applies on the host."""
    frozen: bool = False
    """Whether any device-path system has FixAtoms atoms."""

    @property
    def any(self) -> bool:
        return self.frozen or self.native or bool(self.host_systems)

    @property
    def native(self) -> bool:
        return self.fixed_components is not None or self.com_systems is not None


def plan_constraints(systems: list[Atoms], starts: np.ndarray) -> ConstraintPlan:
    """Route every system's constraints (see the module docstring)."""
    plan = ConstraintPlan()
    fixed = np.zeros((int(starts[-1]), 3), dtype=bool)
    com = np.zeros(len(systems), dtype=bool)
    for b, atoms in enumerate(systems):
        kinds = [type(c) for c in atoms.constraints]
        if not kinds:
            continue
        if all(kind in (FixAtoms, FixCartesian) for kind in kinds):
            for constraint in atoms.constraints:
                if isinstance(constraint, FixCartesian):
                    fixed[starts[b] + constraint.index] |= constraint.mask
                else:
                    plan.frozen = True
        elif kinds == [FixCom]:
            com[b] = True
        else:
            plan.host_systems.append(b)
    plan.fixed_components = fixed if fixed.any() else None
    plan.com_systems = com if com.any() else None
    return plan


def release_host_systems(batch: Batch, plan: ConstraintPlan) -> None:
    """Host-path systems apply their FixAtoms themselves, in ASE's order: take them out of the freeze."""
    if not plan.host_systems:
        return
    host = torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
    host[plan.host_systems] = True
    normal = torch.full_like(batch.atom_categories, AtomCategory.NORMAL.value)
    batch.atom_categories = torch.where(
        segment_broadcast(host, batch.batch_idx), normal, batch.atom_categories
    )


def _mass_weighted_mean(values: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, count: int):
    """``[B, 3]`` Σ m x / Σ m per system."""
    total = segment_sum(masses, batch_idx, count).unsqueeze(1)
    return segment_sum(masses.unsqueeze(1) * values, batch_idx, count) / total


class NativeConstraintHook:
    """FixCartesian and FixCom on the device, as ASE applies them (branch-free, no sync).

    Parameters
    ----------
    fixed_components
        ``[N, 3]`` bool, the FixCartesian components held fixed, or None.
    com_systems
        ``[B]`` bool, the systems with FixCom, or None.
    md
        True for MD (positions, velocity re-derivation, momenta), False for
        optimizers (positions and forces).
    rederive
        MD only: after the drift, re-derive velocities from the constrained
        displacement (RATTLE, as VelocityVerlet, Langevin, Andersen, Bussi);
        False: adjust them as momenta instead (as NVTBerendsen).
    """

    stage = None
    stages = (
        DynamicsStage.BEFORE_PRE_UPDATE,
        DynamicsStage.AFTER_PRE_UPDATE,
        DynamicsStage.AFTER_COMPUTE,
        DynamicsStage.AFTER_POST_UPDATE,
    )
    frequency = 1

    def __init__(
        self,
        fixed_components: torch.Tensor | None,
        com_systems: torch.Tensor | None,
        md: bool,
        rederive: bool = True,
    ) -> None:
        self.fixed = fixed_components
        self.com = com_systems
        self.md = md
        self.rederive = rederive
        self._old: torch.Tensor | None = None

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        if stage == DynamicsStage.BEFORE_PRE_UPDATE:
            self._old = batch.positions.clone()
        elif stage == DynamicsStage.AFTER_PRE_UPDATE and self._old is not None:
            moved = batch.positions
            adjusted = self._positions(batch, self._old, moved)
            batch.positions = adjusted
            if self.md and self.rederive:  # RATTLE's first half: velocities from the displacement
                batch.velocities = batch.velocities + (adjusted - moved) / ctx.dynamics.dt_internal
            elif self.md:
                batch.velocities = self._velocities(batch, batch.velocities)
        elif stage == DynamicsStage.AFTER_COMPUTE and not self.md:
            batch.forces = self._forces(batch, batch.forces)
        elif stage == DynamicsStage.AFTER_POST_UPDATE and self.md:
            batch.velocities = self._velocities(batch, batch.velocities)

    def _positions(self, batch: Batch, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            new = torch.where(self.fixed, old, new)
        if self.com is not None:
            args = (batch.masses, batch.batch_idx, batch.num_graphs)
            shift = _mass_weighted_mean(old, *args) - _mass_weighted_mean(new, *args)
            shift = torch.where(self.com.unsqueeze(1), shift, torch.zeros_like(shift))
            new = new + segment_broadcast(shift, batch.batch_idx)
        return new

    def _forces(self, batch: Batch, forces: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            forces = torch.where(self.fixed, torch.zeros_like(forces), forces)
        if self.com is not None:  # F_i -= m_i λ, λ = Σ m F / Σ m² (ASE's FixCom.adjust_forces)
            masses, idx, count = batch.masses, batch.batch_idx, batch.num_graphs
            lam = segment_sum(masses.unsqueeze(1) * forces, idx, count)
            lam = lam / segment_sum(masses.square(), idx, count).unsqueeze(1)
            lam = torch.where(self.com.unsqueeze(1), lam, torch.zeros_like(lam))
            forces = forces - masses.unsqueeze(1) * segment_broadcast(lam, idx)
        return forces

    def _velocities(self, batch: Batch, velocities: torch.Tensor) -> torch.Tensor:
        if self.fixed is not None:
            velocities = torch.where(self.fixed, torch.zeros_like(velocities), velocities)
        if self.com is not None:
            drift = _mass_weighted_mean(velocities, batch.masses, batch.batch_idx, batch.num_graphs)
            drift = torch.where(self.com.unsqueeze(1), drift, torch.zeros_like(drift))
            velocities = velocities - segment_broadcast(drift, batch.batch_idx)
        return velocities

    def __repr__(self) -> str:
        return f"NativeConstraintHook(fixcartesian={self.fixed is not None}, fixcom={self.com is not None})"
