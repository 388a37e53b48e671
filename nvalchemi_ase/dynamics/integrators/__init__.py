"""Engine integrators: NVE (velocity Verlet) and Langevin."""

from __future__ import annotations

from nvalchemi_ase.dynamics.integrators.langevin import NVTLangevin
from nvalchemi_ase.dynamics.integrators.nve import NVE, DemoDynamics

__all__ = ["NVE", "DemoDynamics", "NVTLangevin"]
