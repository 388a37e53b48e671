"""Batched neighbour lists: the same (i, j, S) as matscipy; the skin rebuilds only what moved."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from ase import Atoms

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors import (
    NeighborCapacityError,
    NeighborList,
    moved_beyond_skin,
    neighbor_list,
    small_cells,
)
from tests.neighbors.reference import (
    assert_pairs_match_matscipy,
    assert_same_pairs_as_matscipy,
    pairs_of_system,
    reference_pairs,
)
from tests.structures import ragged_systems, random_cells

EVERY_SYSTEM, NO_SYSTEM = 1 << 40, -1


@pytest.fixture(autouse=True, params=["direct search", "cell list"])
def builder(request, monkeypatch):
    """Every test runs with each CPU builder making all the rows: the direct search of small cells
    (``small_cells``), and the cell list that larger systems and CUDA use."""
    limit = EVERY_SYSTEM if request.param == "direct search" else NO_SYSTEM
    monkeypatch.setattr(small_cells, "MAX_CANDIDATES", limit)
    return request.param


@pytest.mark.parametrize("seed", range(4))
def test_random_triclinic_cells_and_pbc_match_matscipy(seed):
    assert_same_pairs_as_matscipy(random_cells(12, seed=seed), cutoff=3.0 + seed)


def test_ragged_batch_matches_matscipy():
    assert_same_pairs_as_matscipy(ragged_systems(), cutoff=8.5)


def test_cells_far_below_the_cutoff_give_many_images():
    tiny = Atoms("H", cell=[[1.0, 0, 0], [0.4, 0.9, 0], [0.1, 0.3, 1.1]], pbc=True)
    batch = Batch.from_atoms(tiny, device="cpu")
    i, _, shifts = neighbor_list(batch, 4.0)
    assert len(i) > 200  # every image within 4 Å of a 1 Å cell
    assert (shifts.abs().sum(dim=1) > 0).all()  # the atom sees itself only through a shift
    assert_same_pairs_as_matscipy([tiny], 4.0)


def test_wires_slabs_and_molecules():
    wire = Atoms(
        "H3",
        positions=[[0, 0, 0], [0.9, 0.5, 0.0], [1.5, -0.5, 0.3]],
        cell=[[2.1, 0, 0], [0, 0, 0], [0, 0, 0]],
        pbc=[1, 0, 0],
    )
    slab = Atoms(
        "H4",
        positions=np.random.default_rng(0).random((4, 3)) * 3,
        cell=[[3.0, 0, 0], [1.0, 3.0, 0], [0, 0, 0]],
        pbc=[1, 1, 0],
    )
    far = Atoms(
        "H2", positions=[[1000.0, -500.0, 20.0], [1001.0, -500.0, 20.0]]
    )  # molecule far from the origin
    assert_same_pairs_as_matscipy([wire, slab, far], 2.5)


def test_no_cross_system_pairs_and_no_self_pair_without_shift():
    systems = ragged_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    i, j, shifts = neighbor_list(batch, 8.5)
    assert torch.equal(batch.batch_idx[i], batch.batch_idx[j])
    assert not ((i == j) & (shifts.abs().sum(dim=1) == 0)).any()


def test_pair_vectors_follow_the_ijs_convention():
    systems = random_cells(6, seed=9)
    batch = Batch.from_atoms(systems, device="cpu")
    neighbors = NeighborList(3.5).update(batch)
    vectors = neighbors.vectors(batch.positions)[neighbors.mask]
    i, j, shifts = neighbors.compact()
    expected = (
        batch.positions[j]
        - batch.positions[i]
        + torch.einsum("ek,ekd->ed", shifts.double(), batch.cell[batch.batch_idx[i]])
    )
    torch.testing.assert_close(vectors, expected, rtol=0, atol=1e-12)
    assert vectors.norm(dim=1).max() < 3.5


# ---------------------------------------------------------------- skin


def test_moved_beyond_skin_flags_only_systems_that_moved_far():
    batch = Batch.from_atoms(ragged_systems(), device="cpu")
    reference = batch.positions.clone()
    moved = batch.positions.clone()
    moved[batch.ptr[1]] += torch.tensor([0.26, 0.0, 0.0], dtype=torch.float64)  # > skin/2 in system 1
    moved[batch.ptr[3]] += torch.tensor([0.0, 0.24, 0.0], dtype=torch.float64)  # < skin/2 in system 3
    cell = batch.cell.clone()
    cell_changed = cell.clone()
    cell_changed[4, 0, 0] += 1e-9  # any cell change needs a rebuild
    flags = moved_beyond_skin(moved, reference, cell_changed, cell, batch.batch_idx, skin=0.5)
    assert flags.tolist() == [False, True, False, False, True, False]


def test_skin_list_rebuilds_only_moved_systems_and_stays_exact():
    systems = ragged_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(8.5, skin=1.0)
    nl.update(batch)
    first = nl.rebuilds
    rng = np.random.default_rng(0)
    for step in range(6):
        jitter = torch.as_tensor(rng.normal(scale=0.12, size=(batch.num_nodes, 3)))
        jitter[batch.batch_idx != 1] = 0.0  # only system 1 moves
        batch.positions = batch.positions + jitter
        neighbors = nl.update(batch)
        vectors = neighbors.vectors(batch.positions)
        inside = (neighbors.mask & (vectors.square().sum(dim=2) < 8.5**2)).reshape(-1)
        ours = (
            neighbors.i[inside].numpy(),
            neighbors.j[inside].numpy(),
            neighbors.pair_shifts[inside].numpy(),
        )
        ptr = batch.ptr.tolist()
        current = batch.to_atoms()
        for b in range(batch.num_graphs):
            assert pairs_of_system(*ours, ptr[b], ptr[b + 1]) == reference_pairs(current[b], 8.5), (
                step,
                b,
            )
    assert first == batch.num_graphs
    assert 1 <= nl.rebuilds - first <= 6  # system 1 only, and only when it moved past skin/2


def test_systems_past_half_their_skin_join_a_rebuild():
    systems = random_cells(3, seed=5)
    for atoms in systems:
        atoms.pbc = True
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(3.0, skin=0.4)  # a system must rebuild past 0.2 Å; past 0.1 Å it joins
    nl.update(batch)
    first = nl.rebuilds
    moves = torch.tensor([0.21, 0.12, 0.08], dtype=torch.float64)  # must, joins, keeps its pairs
    shift = moves[batch.batch_idx].unsqueeze(1) * torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    batch.positions = batch.positions + shift
    assert_pairs_match_matscipy(nl.update(batch), batch, 3.0)
    assert nl.rebuilds - first == 2
    assert torch.equal(nl.needs_rebuild(batch), torch.tensor([False, False, False]))
    batch.positions = batch.positions + shift * 0.6  # system 2 has now moved 0.128 Å: still within
    assert not bool(nl.needs_rebuild(batch).any())
    nl.update(batch)
    assert nl.rebuilds - first == 2  # nothing had to rebuild: no call, nobody joins


def _kernel_order_images(neighbors, cell: torch.Tensor) -> np.ndarray:
    """``(s0·a1 + s1·a2) + s2·a3`` per slot in numpy, the pair kernel's order of operations."""
    shifts = neighbors.raw_shifts.double().numpy()
    rows = cell[neighbors.batch_idx].numpy()[:, None]  # [N, 1, 3, 3]
    return (shifts[..., 0:1] * rows[..., 0, :] + shifts[..., 1:2] * rows[..., 1, :]) + (
        shifts[..., 2:3] * rows[..., 2, :]
    )


def test_image_vectors_are_made_once_per_list_and_again_for_a_new_cell():
    batch = Batch.from_atoms(ragged_systems(seed=3), device="cpu")
    nl = NeighborList(8.5, skin=0.5)
    neighbors = nl.update(batch)
    assert neighbors.reused  # a CPU list hands the same object out while its pairs hold
    mask = neighbors.mask.numpy()
    images = neighbors.image_vectors
    assert np.array_equal(images.numpy()[mask], _kernel_order_images(neighbors, batch.cell)[mask])
    again = nl.update(batch)
    assert again is neighbors and again.image_vectors is images  # nothing moved: made once
    batch.cell = batch.cell * 1.01
    stretched = nl.update(batch)
    assert stretched is not neighbors
    expected = _kernel_order_images(stretched, batch.cell)
    assert np.array_equal(
        stretched.image_vectors.numpy()[stretched.mask.numpy()], expected[stretched.mask.numpy()]
    )


def test_cell_list_grid_is_sized_once_per_cell(monkeypatch, builder):
    if builder != "cell list":
        pytest.skip("the direct search has no grid")
    module = importlib.import_module("nvalchemi_ase.neighbors.rows")
    real, sized = module.cell_list_workspace, []

    def counted(*args):
        sized.append(args)
        return real(*args)

    monkeypatch.setattr(module, "cell_list_workspace", counted)
    systems = random_cells(4, seed=3)
    for atoms in systems:
        atoms.pbc = True  # a cell the search takes as it is (open directions get a fresh box per build)
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(3.0, skin=0.2)
    nl.update(batch)
    for _ in range(3):  # fixed cell: rebuilds reuse the grid
        batch.positions = batch.positions + 0.3
        assert_pairs_match_matscipy(nl.update(batch), batch, 3.0)
    assert len(sized) == 1 and nl.rebuilds == 4 * batch.num_graphs
    with torch.no_grad():  # a cell changed in place: sized again
        batch.cell.mul_(1.6)
        batch.positions = batch.positions * 1.6
    assert_pairs_match_matscipy(nl.update(batch), batch, 3.0)
    batch.cell = batch.cell * 0.7  # a new cell tensor: sized again
    batch.positions = batch.positions * 0.7
    assert_pairs_match_matscipy(nl.update(batch), batch, 3.0)
    assert len(sized) == 3


def test_structure_change_rebuilds_everything():
    nl = NeighborList(3.0, skin=0.5)
    nl.update(Batch.from_atoms(random_cells(3, seed=1), device="cpu"))
    other = Batch.from_atoms(random_cells(4, seed=2), device="cpu")
    assert nl.needs_rebuild(other).all()
    neighbors = nl.update(other)
    ptr = other.ptr.tolist()
    vectors = neighbors.vectors(other.positions)
    inside = (neighbors.mask & (vectors.square().sum(dim=2) < 9.0)).reshape(-1)
    got = (
        neighbors.i[inside].numpy(),
        neighbors.j[inside].numpy(),
        neighbors.pair_shifts[inside].numpy(),
    )
    for b, atoms in enumerate(random_cells(4, seed=2)):
        assert pairs_of_system(*got, ptr[b], ptr[b + 1]) == reference_pairs(atoms, 3.0)


def test_a_batch_that_comes_back_after_another_layout_rebuilds_everything():
    # the same atoms, no cells, no pbc: only the atom counts per system tell the two batches apart
    chain = np.array([[3.5 * k, 0.3 * (k % 2), 0.0] for k in range(8)])
    first_systems = [Atoms("Ar5", positions=chain[:5]), Atoms("Ar3", positions=chain[5:])]
    other_systems = [Atoms("Ar3", positions=chain[:3]), Atoms("Ar5", positions=chain[3:])]
    first, other = (Batch.from_atoms(s, device="cpu") for s in (first_systems, other_systems))
    nl = NeighborList(4.0, skin=0.5)
    nl.update(first)
    nl.update(first)  # the same batch again: its atom counts are not compared a second time
    _assert_exact(nl.update(other), other, other_systems, 4.0)
    _assert_exact(nl.update(first), first, first_systems, 4.0)


def _assert_exact(neighbors, batch: Batch, systems: list[Atoms], cutoff: float) -> None:
    vectors = neighbors.vectors(batch.positions)
    inside = (neighbors.mask & (vectors.square().sum(dim=2) < cutoff**2)).reshape(-1)
    got = (neighbors.i[inside].numpy(), neighbors.j[inside].numpy(), neighbors.pair_shifts[inside].numpy())
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        assert pairs_of_system(*got, ptr[b], ptr[b + 1]) == reference_pairs(atoms, cutoff), b


def test_carried_systems_keep_their_pairs_and_only_new_ones_are_built():
    old_systems, new_systems = ragged_systems(), random_cells(2, seed=3)
    old = Batch.from_atoms(old_systems, device="cpu")
    nl = NeighborList(3.0, skin=0.5, max_neighbors=400)  # room for the new systems: no growth to rebuild all
    nl.update(old)
    before = nl.rebuilds
    keep = [2, 0]  # an inflight refill: finished systems dropped, the rest compacted, new ones appended
    nl.carry(keep)
    joined = Batch.cat([old.index_select(keep), Batch.from_atoms(new_systems, device="cpu")])
    neighbors = nl.update(joined)
    assert nl.rebuilds - before == len(new_systems)  # the kept systems were not built again
    _assert_exact(neighbors, joined, [old_systems[2], old_systems[0], *new_systems], 3.0)


def test_a_carry_that_does_not_fit_the_next_batch_builds_everything():
    old = Batch.from_atoms(ragged_systems(), device="cpu")
    nl = NeighborList(3.0, skin=0.5)
    nl.update(old)
    nl.carry([0, 1])
    other_systems = random_cells(3, seed=4)  # does not start with systems 0 and 1
    other = Batch.from_atoms(other_systems, device="cpu")
    before = nl.rebuilds
    neighbors = nl.update(other)
    assert nl.rebuilds - before == other.num_graphs
    _assert_exact(neighbors, other, other_systems, 3.0)


def test_systems_replaced_in_place_are_the_only_ones_rebuilt():
    systems = random_cells(4, seed=5)
    batch = Batch.from_atoms(systems, device="cpu")
    nl = NeighborList(3.0, skin=0.5, max_neighbors=400)
    nl.update(batch)
    replacement = systems[1].copy()  # another structure of the same size and pbc
    replacement.set_cell(replacement.cell * 1.05, scale_atoms=True)
    replacement.rattle(0.4, seed=1)
    fresh = Batch.from_atoms([replacement], device="cpu")
    atoms = batch.atom_indices(np.array([1]))
    batch.positions = batch.positions.index_copy(0, atoms, fresh.positions)
    batch.cell = batch.cell.index_copy(0, torch.tensor([1]), fresh.cell)
    nl.carry()  # same layout, system 1 replaced
    before = nl.rebuilds
    neighbors = nl.update(batch)
    assert nl.rebuilds - before == 1
    _assert_exact(neighbors, batch, [systems[0], replacement, *systems[2:]], 3.0)


# ---------------------------------------------------------------- capacity


def _dense_batch():
    rng = np.random.default_rng(5)
    dense = Atoms("H60", positions=rng.random((60, 3)) * 2.0)
    sparse = Atoms("H8", positions=rng.random((8, 3)) * 6.0)
    return Batch.from_atoms([sparse, dense], device="cpu")


def test_room_grows_when_an_atom_outgrows_it():
    batch = _dense_batch()
    nl = NeighborList(3.0, max_neighbors=4, sync_check=True)
    neighbors = nl.update(batch)
    assert not neighbors.overflow.any()
    assert int(neighbors.mask.sum(dim=1).max()) == 59
    assert_same_pairs_as_matscipy(batch.to_atoms(), 3.0)


def test_deferred_check_flags_the_system_and_raises_at_the_next_update():
    batch = _dense_batch()
    dense_positions = batch.positions.clone()
    batch.positions = batch.positions * 10.0  # dilute: the first build sizes the room for this
    nl = NeighborList(3.0, max_neighbors=4, sync_check=False)
    assert not nl.update(batch).overflow.any()
    batch.positions = dense_positions
    neighbors = nl.update(batch)
    assert neighbors.overflow.tolist() == [False, True]
    with pytest.raises(NeighborCapacityError, match="more than 4 neighbours"):
        nl.update(batch)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": 1.0, "skin": -1.0}, "skin"),
        ({"cutoff": 1.0, "max_neighbors": 0}, "max_neighbors"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeighborList(**kwargs)


@pytest.mark.gpu
def test_cuda_pairs_equal_cpu_pairs():
    systems = ragged_systems()
    cpu = [t.numpy() for t in neighbor_list(Batch.from_atoms(systems, device="cpu"), 8.5)]
    gpu = [t.cpu().numpy() for t in neighbor_list(Batch.from_atoms(systems, device="cuda"), 8.5)]
    assert _pair_set(cpu) == _pair_set(gpu)


def _pair_set(ijs):
    return set(zip(ijs[0].tolist(), ijs[1].tolist(), map(tuple, ijs[2].tolist()), strict=True))


def test_settle_reports_an_overflow_once_and_the_next_update_fits():
    batch = _dense_batch()
    dense_positions = batch.positions.clone()
    batch.positions = batch.positions * 10.0
    nl = NeighborList(3.0, sync_check=False)
    nl.update(batch)
    assert nl.settle() is False
    batch.positions = dense_positions
    assert nl.update(batch).overflow.tolist() == [False, True]
    assert nl.settle() is True and nl.settle() is False
    refreshed = nl.update(batch)  # rebuilt with room for everything: no error, no overflow
    assert not refreshed.overflow.any()
    assert_same_pairs_as_matscipy(batch.to_atoms(), 3.0)


def test_calculator_recomputes_after_an_overflow():
    from ase.calculators.lj import LennardJones as AseLennardJones

    from nvalchemi_ase import BatchedCalculator
    from nvalchemi_ase.models import LennardJones

    model = LennardJones(sigma=1.0, epsilon=1.0, rc=3.0)
    model.neighbor_list.sync_check = False  # as on CUDA: the check is deferred
    calc = BatchedCalculator(model, device="cpu")
    dilute = Atoms("H27", positions=np.random.default_rng(3).random((27, 3)) * 12.0)
    dense = dilute.copy()
    dense.positions /= 3.0
    calc.calculate_batch([dilute])
    result = calc.calculate_batch([dense])[0]
    reference = dense.copy()
    reference.calc = AseLennardJones(sigma=1.0, epsilon=1.0, rc=3.0)
    assert result["energy"] == pytest.approx(reference.get_potential_energy(), rel=1e-10)
