"""NVE: velocity Verlet in the stage loop (see :mod:`nvalchemi_ase.ops.verlet`).

``pre_update``: half kick with the current forces, then drift; ``compute``:
forces at the new positions; ``post_update``: second half kick.

In float64 the first half kick, the drift and the model's Verlet-skin test run
as one warp kernel (:mod:`nvalchemi_ase.ops.verlet_kernel`). The second half
kick is offered to the model, whose pair kernel does it as it writes the forces
(:class:`~nvalchemi_ase.ops.verlet_kernel.SecondKick`, kept unless a hook between
the forces and the kick changed what it reads); otherwise it is a kernel too where
its rows are split over threads, else one torch operation. A masked update (a
sub-stage of a ``FusedStage``) passes its members to the kernels, which copy the
other systems' rows.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.hooks.stages import DynamicsStage
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
        if not self._kick_drift(batch, None):
            dt = self.dt_internal
            batch.assign("velocities", half_kick(batch.velocities, batch.forces, batch.masses, dt))
            batch.assign("positions", drift(batch.positions, batch.velocities, dt))

    def post_update(self, batch: Batch) -> None:
        if not self._second_kick(batch, None):
            dt = self.dt_internal
            batch.assign("velocities", half_kick(batch.velocities, batch.forces, batch.masses, dt))

    def _forces_then_post_update(self, batch: Batch, moving: torch.Tensor | None) -> None:
        """The model may do the second half kick as it writes the forces (the same bits; see
        :class:`~nvalchemi_ase.ops.verlet_kernel.SecondKick`). Its kick is used when the hooks
        between the forces and the kick (AFTER_COMPUTE, BEFORE_POST_UPDATE) left the forces,
        velocities, masses and ``dt`` as they were (a clamp that clamped nothing); else the kick
        is done again with what they left, as every engine does."""
        offer = getattr(self.model, "offer_kick", None)
        overridden = type(self).post_update is not NVE.post_update  # a subclass's own second move
        kernels = _kernels()
        if (
            offer is None
            or overridden
            or moving is not None
            or not kernels.fits(batch.velocities, batch.forces, batch.masses)
        ):
            super()._forces_then_post_update(batch, moving)
            return
        second_kick = kernels.SecondKick(batch.velocities, batch.masses, self.dt_internal)
        offer(second_kick)
        try:
            self.compute(batch)
        finally:
            offer(None)  # an offer the model did not reach (it raised first) must not outlive the step
        kicked_with = self._kick_inputs(batch)
        self._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        self._call_hooks(DynamicsStage.BEFORE_POST_UPDATE, batch)
        now = self._kick_inputs(batch)
        unchanged = (
            all(a is b for a, b in zip(now[0], kicked_with[0], strict=True)) and now[1] == kicked_with[1]
        )
        if second_kick.taken and second_kick.kicked is not None and unchanged:
            batch.assign("velocities", second_kick.kicked)  # made like the batch's own: no checks
        else:
            self.post_update(batch)

    def _kick_inputs(self, batch: Batch) -> tuple[tuple[torch.Tensor, ...], tuple[float, ...]]:
        """What the second half kick reads: the tensors, and their versions (in-place writes) with ``dt``."""
        tensors = (batch.forces, batch.velocities, batch.masses)
        return tensors, (*(tensor._version for tensor in tensors), self.dt_internal)

    def masked_pre_update(self, batch: Batch, members: torch.Tensor) -> None:
        """The first half kick and drift of ``members`` only, in the kernel where it applies
        (float64): it copies the other systems' rows, so nothing is held and blended back."""
        if not self._kick_drift(batch, (batch.batch_idx, members)):
            super().masked_pre_update(batch, members)

    def masked_post_update(self, batch: Batch, members: torch.Tensor) -> None:
        """The second half kick of ``members`` only (in the kernel where it applies)."""
        if not self._second_kick(batch, (batch.batch_idx, members)):
            super().masked_post_update(batch, members)

    def _kick_drift(self, batch: Batch, members: Any) -> bool:
        """Half kick, drift and the model's skin test in one kernel; whether it applied (float64)."""
        kernels = _kernels()
        positions, velocities = batch.positions, batch.velocities
        if not kernels.fits(positions, velocities, batch.forces, batch.masses):
            return False
        neighbor_list = getattr(self.model, "neighbor_list", None)
        if not isinstance(neighbor_list, NeighborList):
            neighbor_list = None
        probe = None if neighbor_list is None else neighbor_list.skin_probe(positions)
        positions, velocities = kernels.kick_drift(
            positions, velocities, batch.forces, batch.masses, self.dt_internal, probe, members
        )
        if neighbor_list is not None and probe is not None:
            neighbor_list.probed(positions, probe[0])
        # made from the batch's own fields: their shape, dtype and device need no checking
        batch.assign("positions", positions)
        batch.assign("velocities", velocities)
        return True

    def _second_kick(self, batch: Batch, members: Any) -> bool:
        """The second half kick as a kernel, or one torch operation into the kernels' pool; whether
        either applied (float64). With ``members`` always the kernel, which copies the others' rows."""
        kernels = _kernels()
        velocities, forces, masses = batch.velocities, batch.forces, batch.masses
        if not kernels.fits(velocities, forces, masses):
            return False
        dt = self.dt_internal
        if members is None and kernels.torch_runs_alone(velocities):
            # one torch operation on this thread: cheaper to call than a launch (same numbers)
            kicked = kernels.VELOCITIES.like(velocities)  # a tensor of the kernels' pool no one holds
            batch.assign("velocities", half_kick(velocities, forces, masses, dt, out=kicked))
        else:  # the kernel: on our threads when split, never on torch's (see TORCH_GRAIN)
            batch.assign("velocities", kernels.half_kick(velocities, forces, masses, dt, members))
        return True


@functools.cache
def _kernels() -> Any:
    """:mod:`nvalchemi_ase.ops.verlet_kernel`, imported on first use (it loads warp), looked up once."""
    from nvalchemi_ase.ops import verlet_kernel

    return verlet_kernel


class DemoDynamics(NVE):
    """Another name for velocity-Verlet dynamics (``dt`` in fs), identical to :class:`NVE`."""
