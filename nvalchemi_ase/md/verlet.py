"""``VelocityVerlet``: ``ase.md.verlet.VelocityVerlet`` over the batched NVE engine."""

from __future__ import annotations

from typing import Any

from nvalchemi_ase.dynamics import NVE, BaseDynamics
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.units import internal_to_fs

__all__ = ["VelocityVerlet"]


class VelocityVerlet(MolecularDynamics):
    """MD with NVE ensemble and velocity Verlet time integration (ASE's signature and behaviour).

    Parameters
    ----------
    atoms, timestep, trajectory, logfile, loginterval, append_trajectory, master, comm
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    """

    def _make_engine(self, model: Any) -> BaseDynamics:
        return NVE(model, dt=internal_to_fs(self.dt))
