"""matscipy's neighbour list as the reference, for cells it can invert."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list


def reference_pairs(atoms: Atoms, cutoff: float) -> set[tuple[int, int, tuple[int, int, int]]]:
    """matscipy's ``ijS`` pair set.

    matscipy inverts the cell, so a cell that does not span 3D (molecules,
    wires) gets stand-in vectors on its non-periodic axes first: shifts along
    them are always zero, so the pair set does not depend on them.
    """
    atoms = atoms.copy()
    if atoms.cell.rank < 3:
        atoms.cell = _completed_cell(atoms)
    i, j, shifts = neighbour_list("ijS", atoms, cutoff)
    return set(zip(i.tolist(), j.tolist(), map(tuple, shifts.tolist()), strict=True))


def _completed_cell(atoms: Atoms) -> np.ndarray:
    cell = atoms.cell.array.copy()
    periodic = cell[atoms.pbc]
    for axis in np.flatnonzero(~atoms.pbc):
        basis = np.vstack([periodic, cell[[k for k in range(3) if k != axis and not atoms.pbc[k]]]])
        basis = basis[np.linalg.norm(basis, axis=1) > 0] if basis.size else np.zeros((0, 3))
        _, _, vh = np.linalg.svd(np.vstack([basis, np.zeros((3, 3))]))
        cell[axis] = vh[-1] * 100.0  # any direction outside the others' span
        periodic = np.vstack([periodic, cell[axis]])
    return cell


def pairs_of_system(i, j, shifts, start: int, stop: int) -> set[tuple[int, int, tuple[int, int, int]]]:
    keep = (i >= start) & (i < stop)
    return set(
        zip(
            (i[keep] - start).tolist(),
            (j[keep] - start).tolist(),
            map(tuple, shifts[keep].tolist()),
            strict=True,
        )
    )
