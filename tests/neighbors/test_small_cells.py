"""The direct search of small cells on a CPU: the same pairs as matscipy, alone and beside the cell list."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors import NeighborList, small_cells
from tests.neighbors.reference import assert_pairs_match_matscipy, assert_same_pairs_as_matscipy
from tests.structures import random_cells


def test_a_batch_of_small_and_large_systems_uses_both_builders_and_matches_matscipy(monkeypatch):
    """The default threshold: small cells searched directly, a large one by the cell list, in one batch;
    a rebuild of some of them keeps the others' rows."""
    monkeypatch.setattr(small_cells, "MAX_CANDIDATES", 4096)
    systems = [*random_cells(4, seed=5), bulk("Cu", "fcc", a=3.61, cubic=True).repeat(5)]
    systems[-1].rattle(0.05, seed=1)
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(4.5, skin=0.4)
    direct = small_cells.search_cells(batch.cell, batch.pbc, batch.counts, nl.search_radius).direct
    assert direct[:4].any() and not direct[4]
    small = int(np.flatnonzero(direct)[0])
    calls = []
    module = importlib.import_module("nvalchemi_ase.neighbors.rows")
    real = module.ops_batch_cell_list

    def counted():
        calls.append(1)
        return real()

    monkeypatch.setattr(module, "ops_batch_cell_list", counted)
    assert_pairs_match_matscipy(nl.update(batch), batch, 4.5)
    first, rebuilt = len(calls), nl.rebuilds
    assert first >= 1  # the large system (twice when the first guess of the room was short)
    moved = torch.zeros(batch.num_nodes, 1, dtype=batch.dtype)
    moved[batch.atom_indices([small])] = 0.35  # past skin/2 in one directly searched system only
    batch.positions = batch.positions + moved
    assert_pairs_match_matscipy(nl.update(batch), batch, 4.5)
    assert len(calls) == first and nl.rebuilds == rebuilt + 1  # one system, no cell list


@pytest.mark.parametrize("limit", [1 << 40, -1], ids=["direct search", "cell list"])
def test_atoms_far_outside_their_cell_find_the_same_pairs(monkeypatch, limit):
    """Positions many cells away (an unwrapped MD run): the direct search wraps them and keeps the
    shifts between the true positions."""
    monkeypatch.setattr(small_cells, "MAX_CANDIDATES", limit)
    systems = random_cells(6, seed=11)
    rng = np.random.default_rng(4)
    for atoms in systems:
        atoms.positions += rng.integers(-7, 8, size=(len(atoms), 3)) @ atoms.cell.array
    assert_same_pairs_as_matscipy(systems, 3.5)


def _edge_cells() -> list[Atoms]:
    """Cells where skipping images is tight: skewed (lattice planes closer than the vectors' lengths),
    several images on each side, atoms on faces, just inside them and just across them."""
    rng = np.random.default_rng(21)
    cells = [
        np.diag([3.1, 4.0, 5.2]),  # orthogonal, a few images each way
        [[4.0, 0.0, 0.0], [3.6, 1.5, 0.0], [-3.5, 1.2, 2.0]],  # strongly skewed: spacings ~1 Å
        [[6.0, 0.0, 0.0], [0.0, 6.0, 0.0], [5.9, 5.9, 1.1]],
    ]
    made = []
    for cell in cells:
        edge = [0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0, -1e-12]  # the last two wrap to the other face
        fractions = np.array([[a, b, c] for a in edge[:3] for b in edge[3:] for c in edge[1:4]])
        fractions = np.vstack([fractions, rng.random((12, 3))])
        made.append(Atoms(f"H{len(fractions)}", scaled_positions=fractions, cell=cell, pbc=True))
        made[-1].positions = fractions @ np.asarray(cell, dtype=float)  # unwrapped: 1.0 and -1e-12 stay
    return made


@pytest.mark.parametrize("cutoff", [0.9, 2.5, 4.3])
def test_images_skipped_by_distance_lose_no_pair(monkeypatch, cutoff):
    """The direct search skips an image whose lattice planes lie a cutoff from the atom; pairs at the
    faces and across them, in skewed cells with images several cells out, are matscipy's all the same,
    and each row lists them in image order, then atom order (the order the kernels sum in)."""
    monkeypatch.setattr(small_cells, "MAX_CANDIDATES", 1 << 40)
    systems = _edge_cells()
    assert_same_pairs_as_matscipy(systems, cutoff)
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(cutoff, skin=0.0)
    neighbors = nl.update(batch)
    matrix, shifts, counts = neighbors.raw_matrix.numpy(), neighbors.raw_shifts.numpy(), neighbors.raw_counts
    crossed, volume = small_cells._normals(batch.cell.numpy())
    system = batch.batch_idx.numpy()
    # each atom's whole-cell wrap, as the search makes it
    wraps = np.floor(np.einsum("nd,nkd->nk", batch.positions.numpy(), crossed[system]) / volume[system, None])
    for i in range(batch.num_nodes):
        listed = int(counts[i])
        assert listed <= matrix.shape[1]
        # the image each partner was found in: its true shift less the two atoms' wraps
        images = shifts[i, :listed] - wraps[i] + wraps[matrix[i, :listed]]
        order = [(*image, j) for image, j in zip(images.tolist(), matrix[i, :listed].tolist(), strict=True)]
        assert order == sorted(order), i
