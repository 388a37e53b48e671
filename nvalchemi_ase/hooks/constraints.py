"""The constraint component and its hook: held components ``[N, 3]`` and ``FixCom`` per system.

:class:`Constraints` says what is constrained (the engines read it:
Andersen's centre-of-mass restore keeps the held components, the Nosé–Hoover
chain keeps private momenta for every constrained component);
:class:`ConstraintHook` applies it around each step as ASE applies
``FixCartesian`` and ``FixCom`` (the moves are :mod:`nvalchemi_ase.ops.constraints`).
``FixAtoms`` atoms (the frozen category) count as held in every component.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops import constraints as moves
from nvalchemi_ase.ops.segment import segment_broadcast

__all__ = ["ConstraintHook", "Constraints"]


@dataclass
class Constraints:
    """What the device constraints hold, for one batch.

    Attributes
    ----------
    held
        ``[N, 3]`` bool: position components held in place (``FixCartesian``), or None.
    fixcom
        ``[B]`` bool: systems whose centre of mass is fixed (``FixCom``), or None.
    host
        ``[B]`` bool: systems whose constraints are applied elsewhere (the
        look-alikes' host path), or None; they count as wholly constrained.
    """

    held: torch.Tensor | None = None
    fixcom: torch.Tensor | None = None
    host: torch.Tensor | None = None

    @classmethod
    def from_batch(cls, batch: Batch) -> Constraints:
        """The ``FixCartesian`` and ``FixCom`` that ``batch``'s systems carried as ASE constraints.

        Raises
        ------
        NotImplementedError
            Naming the system, for any other constraint (``FixAtoms`` is the
            frozen category: use :class:`~nvalchemi_ase.hooks.FreezeAtomsHook`).
        """
        held = torch.zeros(batch.num_nodes, 3, dtype=torch.bool)
        fixcom = torch.zeros(batch.num_graphs, dtype=torch.bool)
        starts = batch.ptr.tolist()
        for b, meta in enumerate(batch.meta):
            for constraint in meta.constraints:
                name = type(constraint).__name__
                if name == "FixCartesian":
                    index = torch.as_tensor(constraint.index, dtype=torch.long) + starts[b]
                    held[index] |= torch.as_tensor(constraint.mask, dtype=torch.bool)
                elif name == "FixCom":
                    fixcom[b] = True
                else:
                    raise NotImplementedError(
                        f"system {b}: constraints: {name} has no device form (FixCartesian and FixCom do)"
                    )
        return cls(
            held.to(batch.device) if held.any() else None,
            fixcom.to(batch.device) if fixcom.any() else None,
        )

    def held_components(self, batch: Batch) -> torch.Tensor:
        """``[N, 3]`` bool: the components that stay put (frozen atoms and ``held``)."""
        frozen = (batch.atom_categories == AtomCategory.FROZEN.value).unsqueeze(1).expand(-1, 3)
        return frozen if self.held is None else frozen | self.held

    def constrained_components(self, batch: Batch) -> torch.Tensor:
        """``[N, 3]`` bool: every component a constraint changes (held; all of fixcom/host systems)."""
        components = self.held_components(batch)
        for systems in (self.fixcom, self.host):
            if systems is not None:
                components = components | segment_broadcast(systems, batch.batch_idx).unsqueeze(1)
        return components


class ConstraintHook:
    """``FixCartesian`` and ``FixCom`` on the device, as ASE applies them (branch-free, no sync).

    Parameters
    ----------
    constraints
        The :class:`Constraints` to apply (``held`` and ``fixcom``).
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

    def __init__(self, constraints: Constraints, md: bool = True, rederive: bool = True) -> None:
        self.constraints = constraints
        self.md = md
        self.rederive = rederive
        self._old: torch.Tensor | None = None

    @property
    def fixed(self) -> torch.Tensor | None:
        return self.constraints.held

    @property
    def com(self) -> torch.Tensor | None:
        return self.constraints.fixcom

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch, held, fixcom = ctx.batch, self.constraints.held, self.constraints.fixcom
        masses, index = batch.masses, batch.batch_idx
        if stage == DynamicsStage.BEFORE_PRE_UPDATE:
            self._old = batch.positions.clone()
        elif stage == DynamicsStage.AFTER_PRE_UPDATE and self._old is not None:
            moved = batch.positions
            adjusted = moves.positions(self._old, moved, masses, index, held, fixcom)
            batch.positions = adjusted
            if self.md and self.rederive:  # RATTLE's first half: velocities from the displacement
                batch.velocities = batch.velocities + (adjusted - moved) / ctx.dynamics.dt_internal
            elif self.md:
                batch.velocities = moves.velocities(batch.velocities, masses, index, held, fixcom)
        elif stage == DynamicsStage.AFTER_COMPUTE and not self.md:
            batch.forces = moves.forces(batch.forces, masses, index, held, fixcom)
        elif stage == DynamicsStage.AFTER_POST_UPDATE and self.md:
            batch.velocities = moves.velocities(batch.velocities, masses, index, held, fixcom)

    def __repr__(self) -> str:
        held, fixcom = self.constraints.held is not None, self.constraints.fixcom is not None
        return f"ConstraintHook(fixcartesian={held}, fixcom={fixcom}, md={self.md})"
