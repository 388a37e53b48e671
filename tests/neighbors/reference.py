"""matscipy's neighbour list as the reference, for cells it can invert."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from matscipy.neighbours import neighbour_list

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors import neighbor_list


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


def assert_same_pairs_as_matscipy(systems: list[Atoms], cutoff: float) -> None:
    """``neighbor_list`` on a batch of ``systems``: each system's pairs are matscipy's."""
    batch = Batch.from_atoms(systems, device="cpu")
    i, j, shifts = (t.numpy() for t in neighbor_list(batch, cutoff))
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        ours = pairs_of_system(i, j, shifts, ptr[b], ptr[b + 1])
        assert ours == reference_pairs(atoms, cutoff), f"system {b} (pbc={atoms.pbc.tolist()})"


def assert_pairs_match_matscipy(neighbors, batch, cutoff):
    """A skin list's pairs within ``cutoff`` (of its ``cutoff + skin``) are matscipy's, system by system."""
    vectors = neighbors.vectors(batch.positions)
    inside = (neighbors.mask & (vectors.square().sum(dim=2) < cutoff**2)).reshape(-1)
    ours = (neighbors.i[inside].numpy(), neighbors.j[inside].numpy(), neighbors.pair_shifts[inside].numpy())
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(batch.to_atoms()):
        assert pairs_of_system(*ours, ptr[b], ptr[b + 1]) == reference_pairs(atoms, cutoff), b
