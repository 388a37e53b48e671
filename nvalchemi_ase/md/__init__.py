"""ASE's ``ase.md`` classes over batched engines: change one import, keep the script.

``from nvalchemi_ase.md import VelocityVerlet, Langevin`` (or the submodules
``nvalchemi_ase.md.verlet``, ``nvalchemi_ase.md.langevin``, ... as in ASE)
take the same arguments as ASE's classes and give the same numbers; ``atoms``
may also be a list of ``Atoms``, advanced together in one batch on the device.
As in ASE, ``NVTBerendsen`` is only importable from its submodule
(``nvalchemi_ase.md.nvtberendsen``).
"""

from __future__ import annotations

from nvalchemi_ase.md.andersen import Andersen
from nvalchemi_ase.md.bussi import Bussi
from nvalchemi_ase.md.langevin import Langevin
from nvalchemi_ase.md.logger import MDLogger
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.md.nose_hoover_chain import MTKNPT, IsotropicMTKNPT, NoseHooverChainNVT
from nvalchemi_ase.md.verlet import VelocityVerlet

__all__ = [
    "MTKNPT",
    "Andersen",
    "Bussi",
    "IsotropicMTKNPT",
    "Langevin",
    "MDLogger",
    "MolecularDynamics",
    "NoseHooverChainNVT",
    "VelocityVerlet",
]
