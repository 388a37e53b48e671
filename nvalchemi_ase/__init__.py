"""nvalchemi_ase: many ``ase.Atoms`` advanced at once on a device.

Lists of :class:`ase.Atoms` become one device :class:`~nvalchemi_ase.data.Batch`;
batched models (Lennard-Jones, Morse, or any ASE calculator through an adapter)
give energies, forces and stresses equal to ASE's own calculators, and
:class:`~nvalchemi_ase.calculator.BatchedCalculator` shows the same model to ASE.
"""

from __future__ import annotations

from nvalchemi_ase.calculator import BatchedCalculator
from nvalchemi_ase.data import AtomCategory, Batch, BatchValidationError
from nvalchemi_ase.models import EMT, ASECalculatorModel, AutogradModel, LennardJones, Morse
from nvalchemi_ase.neighbors import NeighborList, neighbor_list

__version__ = "0.1.0"

__all__ = [
    "EMT",
    "ASECalculatorModel",
    "AtomCategory",
    "AutogradModel",
    "Batch",
    "BatchValidationError",
    "BatchedCalculator",
    "LennardJones",
    "Morse",
    "NeighborList",
    "__version__",
    "neighbor_list",
]
