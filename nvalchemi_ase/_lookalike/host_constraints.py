"""Any ASE constraint, applied on the host through its own ``adjust_*`` methods.

For the systems that carry constraints the device cannot apply (bond lengths,
planes, lines, Hookean springs, external forces, ...), each step copies those
systems' atoms to a private ``Atoms`` mirror and applies the constraints
as ASE's ``Atoms.set_positions``, ``get_forces(md=...)``,
``get_potential_energy`` and ``set_momenta`` do, in the constraints' order,
exactly as an ASE integrator or optimizer sees them; the results go back to
the device. Correct, and slower only
for those systems: each firing copies their atoms once each way.
"""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage

__all__ = ["HostConstraintHook"]


class HostConstraintHook:
    """ASE's constraint handling for selected systems, on the host.

    Parameters
    ----------
    systems
        The ``Atoms`` of every system (only ``selected`` are used; their
        constraints are read once, here).
    selected
        Indices of the systems handled here.
    starts
        ``[B+1]`` atom offsets of the systems in the batch.
    md
        True: MD semantics (``get_forces(md=True)``, velocities re-derived
        from the constrained displacement, ``set_momenta`` at the end of the
        step). False: optimizer semantics (forces projected).
    device
        The batch's device.
    rederive
        MD only: re-derive velocities from the constrained displacement after
        the drift (RATTLE); False: ``set_momenta`` there instead (NVTBerendsen).

    Attributes
    ----------
    extra_energy
        ``[B]`` host array: the constraints' ``adjust_potential_energy`` terms
        at the last force evaluation (eV), zero for other systems.
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
        systems: list[Atoms],
        selected: list[int],
        starts: np.ndarray,
        md: bool,
        device: torch.device,
        rederive: bool = True,
    ) -> None:
        self.selected = list(selected)
        self.md = md
        self.rederive = rederive
        self.mirrors = [systems[b].copy() for b in self.selected]
        for mirror in self.mirrors:
            mirror.calc = None
        rows = [np.arange(starts[b], starts[b + 1]) for b in self.selected]
        local = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        self.local = [slice(int(local[k]), int(local[k + 1])) for k in range(len(rows))]
        self.index = torch.as_tensor(np.concatenate(rows), dtype=torch.long, device=device)
        self.extra_energy = np.zeros(len(systems))
        self._old: torch.Tensor | None = None

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        if stage == DynamicsStage.BEFORE_PRE_UPDATE:
            self._old = batch.positions.index_select(0, self.index)
        elif stage == DynamicsStage.AFTER_PRE_UPDATE and self._old is not None:
            self._adjust_positions(batch, ctx.dynamics.dt_internal)
        elif stage == DynamicsStage.AFTER_COMPUTE:
            self._adjust_forces(batch)
        elif stage == DynamicsStage.AFTER_POST_UPDATE and self.md:
            self._adjust_momenta(batch)

    def _put(self, tensor: torch.Tensor, values: np.ndarray) -> torch.Tensor:
        source = torch.as_tensor(values, dtype=tensor.dtype).to(tensor.device)
        return tensor.index_copy(0, self.index, source)

    def _adjust_positions(self, batch, dt: float) -> None:
        """``atoms.set_positions(new)`` with the old positions in place: each constraint adjusts ``new``."""
        assert self._old is not None
        old, new, velocities = to_host(
            [
                self._old,
                batch.positions.index_select(0, self.index),
                batch.velocities.index_select(0, self.index),
            ]
        )
        adjusted = new.copy()
        for mirror, rows in zip(self.mirrors, self.local, strict=True):
            mirror.set_positions(old[rows], apply_constraint=False)
            mirror.set_positions(new[rows])
            adjusted[rows] = mirror.positions
        batch.positions = self._put(batch.positions, adjusted)
        if self.md and self.rederive:  # RATTLE's first half: velocities from the displacement
            batch.velocities = self._put(batch.velocities, velocities + (adjusted - new) / dt)
        elif self.md:
            self._adjust_momenta(batch)

    def _adjust_forces(self, batch) -> None:
        """``atoms.get_forces(md=...)`` over the raw model forces; the constraints' energy terms."""
        positions, forces = to_host(
            [batch.positions.index_select(0, self.index), batch.forces.index_select(0, self.index)]
        )
        adjusted = forces.copy()
        for k, (mirror, rows) in enumerate(zip(self.mirrors, self.local, strict=True)):
            mirror.set_positions(positions[rows], apply_constraint=False)
            adjusted[rows], self.extra_energy[self.selected[k]] = self._constrained(mirror, forces[rows])
        batch.forces = self._put(batch.forces, adjusted)

    def _constrained(self, mirror: Atoms, forces: np.ndarray) -> tuple[np.ndarray, float]:
        """Forces as ``Atoms.get_forces(md=...)`` gives them; the energy ``get_potential_energy()`` adds."""
        forces = forces.copy()
        extra = 0.0
        for constraint in mirror.constraints:
            if self.md and hasattr(constraint, "redistribute_forces_md"):
                constraint.redistribute_forces_md(mirror, forces)
            if not self.md or hasattr(constraint, "adjust_potential_energy"):
                constraint.adjust_forces(mirror, forces)
            if hasattr(constraint, "adjust_potential_energy"):
                extra += constraint.adjust_potential_energy(mirror)
        return forces, extra

    def _adjust_momenta(self, batch) -> None:
        """``atoms.set_momenta(p)``: each constraint's ``adjust_momenta`` (RATTLE's second half)."""
        positions, velocities = to_host(
            [batch.positions.index_select(0, self.index), batch.velocities.index_select(0, self.index)]
        )
        adjusted = velocities.copy()
        for mirror, rows in zip(self.mirrors, self.local, strict=True):
            mirror.set_positions(positions[rows], apply_constraint=False)
            masses = mirror.get_masses()[:, None]
            mirror.set_momenta(velocities[rows] * masses)
            adjusted[rows] = mirror.get_momenta() / masses
        batch.velocities = self._put(batch.velocities, adjusted)

    @property
    def noise_systems(self) -> list[int]:
        """The systems with a constraint that redistributes Langevin noise (``redistribute_forces_md``)."""
        return [
            b
            for b, mirror in zip(self.selected, self.mirrors, strict=True)
            if any(hasattr(c, "redistribute_forces_md") for c in mirror.constraints)
        ]

    def redistribute_noise(self, system: int, noise: np.ndarray) -> None:
        """As ASE's ``Langevin.step``: ``redistribute_forces_md(atoms, noise, rand=True)``, in place.

        ``noise`` is system ``system``'s ``[n, 3]`` draw. The mirror holds
        the positions of the last constraint call (those of this step's start).
        """
        mirror = self.mirrors[self.selected.index(system)]
        for constraint in mirror.constraints:
            if hasattr(constraint, "redistribute_forces_md"):
                constraint.redistribute_forces_md(mirror, noise, rand=True)

    def __repr__(self) -> str:
        return f"HostConstraintHook(systems={self.selected}, md={self.md})"
