"""The direct search of small cells on a CPU: the same pairs as matscipy, alone and beside the cell list."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
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
    direct = small_cells.direct_systems(batch.cell, batch.pbc, batch.counts, nl.search_radius)
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
