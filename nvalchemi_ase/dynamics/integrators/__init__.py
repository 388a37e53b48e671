"""Engine integrators: NVE (velocity Verlet), Langevin and the other thermostats of ase.md, batched."""

from __future__ import annotations

from nvalchemi_ase.dynamics.integrators.andersen import Andersen
from nvalchemi_ase.dynamics.integrators.berendsen import NVTBerendsen
from nvalchemi_ase.dynamics.integrators.berendsen_npt import NPTBerendsen
from nvalchemi_ase.dynamics.integrators.bussi import Bussi
from nvalchemi_ase.dynamics.integrators.langevin import NVTLangevin
from nvalchemi_ase.dynamics.integrators.langevin_baoab import LangevinBAOAB
from nvalchemi_ase.dynamics.integrators.langevin_baoab_npt import LangevinBAOABNPT
from nvalchemi_ase.dynamics.integrators.melchionna import MelchionnaNPT
from nvalchemi_ase.dynamics.integrators.mtk_npt import MTKNPT
from nvalchemi_ase.dynamics.integrators.nose_hoover import NoseHooverChainNVT
from nvalchemi_ase.dynamics.integrators.nve import NVE, DemoDynamics

__all__ = [
    "MTKNPT",
    "NVE",
    "Andersen",
    "Bussi",
    "DemoDynamics",
    "LangevinBAOAB",
    "LangevinBAOABNPT",
    "MelchionnaNPT",
    "NPTBerendsen",
    "NVTBerendsen",
    "NVTLangevin",
    "NoseHooverChainNVT",
]
