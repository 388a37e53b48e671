"""NVE: velocity Verlet in the stage loop (see :mod:`nvalchemi_ase.ops.verlet`).

``pre_update``: half kick with the current forces, then drift; ``compute``:
forces at the new positions; ``post_update``: second half kick.
"""

from __future__ import annotations

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.ops.verlet import drift, half_kick


class NVE(BaseDynamics):
    """Microcanonical molecular dynamics by velocity Verlet.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    n_steps, hooks, convergence_hook
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.
    """

    def pre_update(self, batch: Batch) -> None:
        dt = self.dt_internal
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        batch.positions = drift(batch.positions, velocities, dt)
        batch.velocities = velocities

    def post_update(self, batch: Batch) -> None:
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)


class DemoDynamics(NVE):
    """Another name for velocity-Verlet dynamics (``dt`` in fs), identical to :class:`NVE`."""
