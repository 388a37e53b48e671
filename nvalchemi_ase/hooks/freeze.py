"""``FreezeAtomsHook``: hold the atoms of one category in place (what ``FixAtoms`` becomes).

``Batch.from_atoms`` turns an ``ase.constraints.FixAtoms`` into
``AtomCategory.FROZEN``; this hook then makes every engine honour it:

* ``BEFORE_PRE_UPDATE``: remember the positions, zero the frozen atoms'
  velocities and (``zero_forces``) forces, so the integrator or optimizer sees
  neither motion nor force on them (ASE's ``FixAtoms.adjust_forces``);
* ``BEFORE_COMPUTE``: put the frozen atoms back before the model sees them (a
  thermostat's random kick may have moved them), as ASE's ``set_positions``
  applies ``FixAtoms`` before the force call;
* ``AFTER_COMPUTE``: with ``zero_forces``, zero the forces the model just gave
  them, so convergence checks ignore them (ASE's ``fmax`` does too);
* ``AFTER_POST_UPDATE``: put the remembered positions back bit-for-bit and zero
  their velocities (and forces).

With ``follow_cell``, the frozen atoms keep their fractional coordinates
instead: a cell the engine changes carries them along (ASE's
``set_cell(..., scale_atoms=True)`` moves ``FixAtoms`` atoms too).

Inside a ``FusedStage``, register it on the fused stage itself (its own hooks
fire at all four stages); sub-stages do not receive ``BEFORE_COMPUTE``.

Everything is a branch-free ``torch.where`` over all atoms: no sync, no loop.
Register it before a ``WrapPeriodicHook`` (both fire at ``AFTER_POST_UPDATE``).
"""

from __future__ import annotations

import torch

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops import constraints
from nvalchemi_ase.ops.cell import scale_positions


class FreezeAtomsHook:
    """Keep the atoms whose ``atom_categories`` equals ``category`` fixed.

    Parameters
    ----------
    category
        The category to freeze (default ``AtomCategory.FROZEN``, i.e. ``FixAtoms``).
    zero_forces
        Also zero the frozen atoms' forces (eV/Å), as ASE's ``FixAtoms`` does
        for ``atoms.get_forces()``; FIRE and convergence checks then ignore them.
    follow_cell
        When the step changes cells (a cell filter): frozen atoms keep their
        fractional coordinates, scaled with their cell as ASE's
        ``set_cell(..., scale_atoms=True)`` moves them.
    frequency
        Must be 1: a freeze that skips steps is not a freeze.
    follow_cell
        Hold the frozen atoms at their fractional coordinates, so that they
        move with a changing cell (variable-cell engines).
    """

    stage = None
    stages = (
        DynamicsStage.BEFORE_PRE_UPDATE,
        DynamicsStage.BEFORE_COMPUTE,
        DynamicsStage.AFTER_COMPUTE,
        DynamicsStage.AFTER_POST_UPDATE,
    )

    def __init__(
        self,
        category: int = AtomCategory.FROZEN,
        zero_forces: bool = True,
        frequency: int = 1,
        follow_cell: bool = False,
    ) -> None:
        if isinstance(category, bool) or not isinstance(category, int):
            raise TypeError(f"category must be an AtomCategory or int, got {category!r}")
        if not isinstance(zero_forces, bool):
            raise TypeError(f"zero_forces must be a bool, got {zero_forces!r}")
        if isinstance(frequency, bool) or frequency != 1:
            raise ValueError(
                f"FreezeAtomsHook frequency must be 1 (a freeze that skips steps is not one), "
                f"got {frequency!r}"
            )
        self.category = int(category)
        self.zero_forces = zero_forces
        self.frequency = 1
        self.follow_cell = bool(follow_cell)
        self._positions: torch.Tensor | None = None
        self._cell: torch.Tensor | None = None

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        frozen = (batch.atom_categories == self.category).unsqueeze(1)
        if stage == DynamicsStage.BEFORE_PRE_UPDATE:
            self._positions = batch.positions.clone()
            self._cell = batch.cell.clone() if self.follow_cell else None
        elif stage == DynamicsStage.AFTER_COMPUTE:
            self._hold_still(batch, frozen)
            return
        elif self._positions is not None and self._positions.shape == batch.positions.shape:
            held = self._positions
            if self._cell is not None and self._cell.shape == batch.cell.shape:
                held = scale_positions(held, self._cell, batch.cell, batch.batch_idx)
            batch.positions = torch.where(frozen, held, batch.positions)
        self._hold_still(batch, frozen)

    def _hold_still(self, batch: Batch, frozen: torch.Tensor) -> None:
        masses, index = batch.masses, batch.batch_idx
        batch.velocities = constraints.velocities(batch.velocities, masses, index, frozen, None)
        if self.zero_forces and batch.forces is not None:
            batch.forces = constraints.forces(batch.forces, masses, index, frozen, None)

    def __repr__(self) -> str:
        return (
            f"FreezeAtomsHook(category={self.category}, zero_forces={self.zero_forces}, "
            f"follow_cell={self.follow_cell})"
        )


__all__ = ["FreezeAtomsHook"]
