"""Batched atomistic data: :class:`Batch`, field declarations and ASE conversion."""

from __future__ import annotations

from nvalchemi_ase.data.batch import Batch, SystemMeta, default_device
from nvalchemi_ase.data.bound import forces_bound, keep_forces_bound
from nvalchemi_ase.data.convert import atoms_to_batch, batch_to_atoms
from nvalchemi_ase.data.errors import BatchValidationError
from nvalchemi_ase.data.fields import FIELDS, FORCES_BOUND, MODEL_RESULTS, AtomCategory, Field, Kind, Scope

__all__ = [
    "FIELDS",
    "FORCES_BOUND",
    "MODEL_RESULTS",
    "AtomCategory",
    "Batch",
    "BatchValidationError",
    "Field",
    "Kind",
    "Scope",
    "SystemMeta",
    "atoms_to_batch",
    "batch_to_atoms",
    "default_device",
    "forces_bound",
    "keep_forces_bound",
]
