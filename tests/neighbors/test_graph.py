"""Reverse edges and angle triplets of a batched edge list, against matscipy's pairs enumerated in Python."""

from __future__ import annotations

from collections import defaultdict

import pytest
import torch

from nvalchemi_ase import Batch
from nvalchemi_ase.neighbors import NeighborList
from nvalchemi_ase.neighbors.graph import angle_triplets, reverse_edges
from tests.neighbors.reference import reference_pairs
from tests.structures import ragged_systems, random_cells

CUTOFF, ANGLE_CUTOFF = 6.0, 4.0

Pair = tuple[int, int, tuple[int, int, int]]


def _edge_list(systems):
    """Our compact edge list of the batch, and the (system, i, j, S) naming each edge."""
    batch = Batch.from_atoms(systems, device="cpu")
    i, j, shifts = NeighborList(CUTOFF).update(batch).compact()
    vectors = (
        batch.positions[j]
        - batch.positions[i]
        + torch.einsum("ed,edc->ec", shifts.double(), batch.cell[batch.batch_idx[i]])
    )
    keep = vectors.norm(dim=1) < CUTOFF
    i, j, shifts, lengths = i[keep], j[keep], shifts[keep], vectors.norm(dim=1)[keep]
    system = batch.batch_idx[i]
    start = batch.ptr[system]
    names = [
        (s, a, b, tuple(S))
        for s, a, b, S in zip(
            system.tolist(), (i - start).tolist(), (j - start).tolist(), shifts.tolist(), strict=True
        )
    ]
    return batch, torch.stack([i, j]), shifts, lengths, names


SYSTEMS = [*ragged_systems(), *random_cells(6, seed=3)]


def test_every_edge_finds_its_reverse():
    batch, edge_index, shifts, _, names = _edge_list(SYSTEMS)
    reverse = reverse_edges(edge_index, shifts, batch.num_nodes)
    for e, r in enumerate(reverse.tolist()):
        s, a, b, S = names[e]
        assert names[r] == (s, b, a, tuple(-x for x in S))
    assert sorted(reverse[reverse].tolist()) == list(range(len(names)))


def test_an_edge_list_without_reverses_is_refused():
    edge_index = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="no reverse"):
        reverse_edges(edge_index, torch.zeros(2, 3, dtype=torch.long), 3)


def test_triplets_are_the_ordered_pairs_of_short_bonds_at_each_atom():
    _, edge_index, _, lengths, names = _edge_list(SYSTEMS)
    triplets = angle_triplets(edge_index, lengths, ANGLE_CUTOFF)
    ours = [(names[a], names[b]) for a, b in triplets.tolist()]
    assert len(ours) == len(set(ours))
    expected = set()
    for s, atoms in enumerate(SYSTEMS):
        bonds: dict[int, list[Pair]] = defaultdict(list)
        for a, b, S in reference_pairs(atoms, ANGLE_CUTOFF):
            bonds[a].append((a, b, S))
        for at_atom in bonds.values():
            expected |= {((s, *x), (s, *y)) for x in at_atom for y in at_atom if x != y}
    assert set(ours) == expected
    assert all(first[:2] == second[:2] for first, second in ours)  # one centre per triplet


def test_no_short_bonds_give_no_triplets():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    assert angle_triplets(edge_index, torch.tensor([5.0, 5.0]), 3.0).shape == (0, 2)


def test_a_first_bond_exactly_at_the_cutoff_pairs_only_with_shorter_bonds():
    """CHGNet's rule: the first bond of an angle may be exactly at the cutoff, the second may not."""
    # From atom 0: bonds 0 and 1 exactly 3 Å, bond 2 shorter; bond 3 from atom 1, longer.
    edge_index = torch.tensor([[0, 0, 0, 1], [1, 2, 3, 0]])
    lengths = torch.tensor([3.0, 3.0, 2.0, 3.5], dtype=torch.float64)
    for first_at_cutoff in (False, True):
        triplets = angle_triplets(edge_index, lengths, 3.0, first_at_cutoff=first_at_cutoff)
        may_be_first = [e for e in range(4) if lengths[e] <= 3.0 and (first_at_cutoff or lengths[e] < 3.0)]
        expected = {
            (a, b)
            for a in may_be_first
            for b in range(4)
            if a != b and lengths[b] < 3.0 and edge_index[0, a] == edge_index[0, b]
        }
        assert sorted(map(tuple, triplets.tolist())) == sorted(expected)
    assert sorted(map(tuple, triplets.tolist())) == [(0, 2), (1, 2)]
