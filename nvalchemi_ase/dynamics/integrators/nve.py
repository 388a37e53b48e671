"""NVE: velocity Verlet in the stage loop (see :mod:`nvalchemi_ase.ops.verlet`).

``pre_update``: half kick with the current forces, then drift; ``compute``:
forces at the new positions; ``post_update``: second half kick.

In float64 the first half kick, the drift and the model's Verlet-skin test run
as one warp kernel (:mod:`nvalchemi_ase.ops.verlet_kernel`); the second half
kick is a kernel too where its rows are split over threads, else one torch
operation.
"""

from __future__ import annotations

import functools
from typing import Any

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.neighbors import NeighborList
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
        kernels = _kernels()
        positions, velocities = batch.positions, batch.velocities
        if kernels.fits(positions, velocities, batch.forces, batch.masses):
            neighbor_list = getattr(self.model, "neighbor_list", None)
            if not isinstance(neighbor_list, NeighborList):
                neighbor_list = None
            probe = None if neighbor_list is None else neighbor_list.skin_probe(positions)
            positions, velocities = kernels.kick_drift(
                positions, velocities, batch.forces, batch.masses, dt, probe
            )
            if neighbor_list is not None and probe is not None:
                neighbor_list.probed(positions, probe[0])
        else:
            velocities = half_kick(velocities, batch.forces, batch.masses, dt)
            positions = drift(positions, velocities, dt)
        # made from the batch's own fields: their shape, dtype and device need no checking
        batch.assign("positions", positions)
        batch.assign("velocities", velocities)

    def post_update(self, batch: Batch) -> None:
        dt = self.dt_internal
        kernels = _kernels()
        velocities, forces, masses = batch.velocities, batch.forces, batch.masses
        if not kernels.fits(velocities, forces, masses):
            batch.assign("velocities", half_kick(velocities, forces, masses, dt))
        elif kernels.splits(velocities):
            batch.assign("velocities", kernels.half_kick(velocities, forces, masses, dt))
        else:  # one torch operation: on one thread, cheaper to call than a launch (same numbers)
            kicked = kernels.VELOCITIES.like(velocities)  # a tensor of the kernels' pool no one holds
            batch.assign("velocities", half_kick(velocities, forces, masses, dt, out=kicked))


@functools.cache
def _kernels() -> Any:
    """:mod:`nvalchemi_ase.ops.verlet_kernel`, imported on first use (it loads warp), looked up once."""
    from nvalchemi_ase.ops import verlet_kernel

    return verlet_kernel


class DemoDynamics(NVE):
    """Another name for velocity-Verlet dynamics (``dt`` in fs), identical to :class:`NVE`."""
