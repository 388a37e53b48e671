"""Checks on input ``Atoms``, run before any batch state exists."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from nvalchemi_ase.data.errors import BatchValidationError

_DEGENERATE_TOLERANCE = 1e-10
"""Smallest allowed Gram determinant of the periodic vectors, relative to their squared lengths."""


def validate_atoms(atoms: Any, index: int) -> None:
    """Raise :class:`BatchValidationError` naming system ``index`` and the field at fault."""
    if not isinstance(atoms, Atoms):
        raise BatchValidationError(f"expected ase.Atoms, got {type(atoms).__name__}", system=index)
    if len(atoms) == 0:
        raise BatchValidationError("the system has no atoms", system=index, field="positions")
    _check_finite(atoms.positions, index, "positions")
    if "momenta" in atoms.arrays:
        _check_finite(atoms.arrays["momenta"], index, "momenta")
    masses = atoms.get_masses()
    bad = np.flatnonzero(~np.isfinite(masses) | (masses <= 0.0))
    if bad.size:
        raise BatchValidationError(
            f"masses must be finite and positive; atom {bad[0]} has mass {masses[bad[0]]}",
            system=index,
            field="masses",
        )
    _check_cell(atoms, index)


def _check_finite(values: np.ndarray, index: int, field: str) -> None:
    bad = np.flatnonzero(~np.all(np.isfinite(values), axis=1))
    if bad.size:
        raise BatchValidationError(
            f"non-finite values at atom {bad[0]} ({bad.size} atoms in all)",
            system=index,
            field=field,
        )


def _check_cell(atoms: Atoms, index: int) -> None:
    cell = atoms.cell.array
    if not np.all(np.isfinite(cell)):
        raise BatchValidationError("the cell has non-finite entries", system=index, field="cell")
    periodic = cell[atoms.pbc]
    if periodic.shape[0] == 0:
        return
    lengths_sq = np.einsum("ij,ij->i", periodic, periodic)
    gram = np.linalg.det(periodic @ periodic.T)
    if np.any(lengths_sq == 0.0) or gram <= _DEGENERATE_TOLERANCE * np.prod(lengths_sq):
        raise BatchValidationError(
            f"pbc={atoms.pbc.tolist()} but the periodic cell vectors are degenerate (cell={cell.tolist()})",
            system=index,
            field="cell",
        )
