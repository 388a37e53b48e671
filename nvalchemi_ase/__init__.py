"""nvalchemi_ase: many ``ase.Atoms`` advanced at once on a device.

Lists of :class:`ase.Atoms` become one device :class:`~nvalchemi_ase.data.Batch`;
batched models (Lennard-Jones, Morse, EMT, or any ASE calculator through an
adapter) give energies, forces and stresses equal to ASE's own calculators, and
:class:`~nvalchemi_ase.calculator.BatchedCalculator` shows the same model to ASE.

The names below are imported on first use, so ``import nvalchemi_ase`` (and the
command line's ``--help``) does not pay for torch and the kernels.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "BatchedCalculator": "nvalchemi_ase.calculator",
    "AtomCategory": "nvalchemi_ase.data",
    "Batch": "nvalchemi_ase.data",
    "BatchValidationError": "nvalchemi_ase.data",
    "EMT": "nvalchemi_ase.models",
    "ASECalculatorModel": "nvalchemi_ase.models",
    "AutogradModel": "nvalchemi_ase.models",
    "LennardJones": "nvalchemi_ase.models",
    "Morse": "nvalchemi_ase.models",
    "NeighborList": "nvalchemi_ase.neighbors",
    "neighbor_list": "nvalchemi_ase.neighbors",
}
"""Public name → the module that defines it (imported when the name is first used)."""

if TYPE_CHECKING:
    from nvalchemi_ase.calculator import BatchedCalculator
    from nvalchemi_ase.data import AtomCategory, Batch, BatchValidationError
    from nvalchemi_ase.models import EMT, ASECalculatorModel, AutogradModel, LennardJones, Morse
    from nvalchemi_ase.neighbors import NeighborList, neighbor_list


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'nvalchemi_ase' has no attribute '{name}'")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


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
