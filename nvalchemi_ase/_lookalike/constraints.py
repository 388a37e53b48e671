"""ASE constraints in the look-alikes: which run on the device, and the device hook for them.

Routing, per system (decided once, at construction):

* only ``FixAtoms`` and ``FixCartesian``: on the device. ``FixAtoms`` is the
  frozen atom category (``Batch.from_atoms``) and the engine's
  :class:`~nvalchemi_ase.dynamics.hooks.FreezeAtomsHook`; ``FixCartesian`` is
  :class:`~nvalchemi_ase.hooks.constraints.ConstraintHook`;
* exactly one ``FixCom``: on the device, :class:`~nvalchemi_ase.hooks.constraints.ConstraintHook`;
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

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms, FixCartesian, FixCom, FixedPlane, Hookean

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.hooks.constraints import Constraints
from nvalchemi_ase.ops.segment import segment_broadcast

__all__ = ["SUPPORTED", "ConstraintPlan", "no_fixcom_mixture", "only_constraints", "plan_constraints"]

SUPPORTED = (FixAtoms, FixCartesian, FixCom, FixedPlane, Hookean)
"""The constraints the NHC and constant-cell BAOAB look-alikes reproduce ASE's numbers with."""


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


def device_constraints(plan: ConstraintPlan, batch: Batch) -> Constraints:
    """The engine's constraint component for a plan: held components, FixCom and host-path systems."""
    device = batch.device
    host = None
    if plan.host_systems:
        host = torch.zeros(batch.num_graphs, dtype=torch.bool, device=device)
        host[plan.host_systems] = True
    as_tensor = lambda a: None if a is None else torch.as_tensor(a, device=device)  # noqa: E731
    return Constraints(as_tensor(plan.fixed_components), as_tensor(plan.com_systems), host)


def only_constraints(systems: Sequence[Atoms], name: str, allowed: tuple[type, ...], why: str) -> None:
    """Raise NotImplementedError naming the first constraint whose type is not in ``allowed``."""
    for index, atoms in enumerate(systems):
        for constraint in atoms.constraints:
            if type(constraint) not in allowed:
                names = ", ".join(kind.__name__ for kind in allowed)
                raise NotImplementedError(
                    f"atoms[{index}] has a {type(constraint).__name__} constraint: "
                    f"{name} supports only {names} ({why})"
                )


def no_fixcom_mixture(systems: Sequence[Atoms], name: str) -> None:
    """Raise NotImplementedError for ``FixCom`` next to a constraint that holds positions.

    ASE's ``FixCom`` then shifts (NHC) or gives velocities to (BAOAB) the
    atoms the other constraint holds, so that they move.
    """
    for index, atoms in enumerate(systems):
        kinds = {type(constraint) for constraint in atoms.constraints}
        if FixCom in kinds and kinds - {FixCom, Hookean}:
            other = sorted(kind.__name__ for kind in kinds - {FixCom, Hookean})[0]
            raise NotImplementedError(
                f"atoms[{index}] has FixCom with a {other} constraint: in ASE's {name}, FixCom moves "
                f"the atoms {other} holds; not reproduced here"
            )
