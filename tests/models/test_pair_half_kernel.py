"""The half-list pair kernel (CPU): the full list's numbers, ASE's, the same bits on any number of threads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.calculators.morse import MorsePotential

from nvalchemi_ase.data import FORCES_BOUND, Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models import LennardJones, Morse, evaluate, pair_half_kernel, pair_kernel
from nvalchemi_ase.ops import warp_launch
from tests.models.compare import assert_matches_ase
from tests.structures import argon_bulk, ragged_systems, random_cells

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}
MODELS = {
    "lj-shifted": lambda: LennardJones(**ARGON),
    "lj-smooth": lambda: LennardJones(**ARGON, ro=6.0, smooth=True),
    "morse": lambda: Morse(epsilon=0.0104, rho0=6.0, r0=3.8),
}
KEYS = ("energy", "forces", "energies", "stress")
PROPERTIES = ("energy", "forces", "stress", "energies")
SAME_TO_ROUND_OFF = 1e-12
"""Relative: the half list sums the same terms as the full list in another order."""


def _systems(name: str) -> list:
    if name == "ragged":  # periodic, triclinic, slab, molecule, one atom in a cell far below the cutoff
        return ragged_systems(seed=11)
    if name == "small-cells":  # random triclinic cells and pbc: many images of each atom
        return random_cells(10, seed=3)
    # a large box (chunks when LARGE_SYSTEM is lowered) beside small systems
    return [argon_bulk(3, seed=2), *ragged_systems(seed=12)[1:]]


def _evaluate(model, batch, half: bool, monkeypatch) -> dict[str, torch.Tensor]:
    monkeypatch.setattr(pair_kernel, "HALF_LIST_ON_CPU", half)
    results = evaluate(model, batch, PROPERTIES)
    assert ("half" in model.neighbor_list._current.__dict__) == half  # the path asked for was taken
    return results


def _assert_close(ours, theirs):
    for key in KEYS:
        finite = torch.isfinite(theirs[key])
        assert torch.equal(finite, torch.isfinite(ours[key])), key
        scale = float(theirs[key][finite].abs().max())
        torch.testing.assert_close(
            ours[key][finite], theirs[key][finite], rtol=SAME_TO_ROUND_OFF, atol=SAME_TO_ROUND_OFF * scale
        )


@pytest.fixture
def chunks_from_108_rows(monkeypatch):
    """A system of more than 64 rows, holding a quarter of the batch, is cut into chunks."""
    monkeypatch.setattr(pair_half_kernel, "LARGE_SYSTEM", 64)


@pytest.mark.parametrize("systems", ["ragged", "small-cells", "large-box"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_half_list_gives_the_full_lists_numbers(name, systems, monkeypatch, chunks_from_108_rows):
    batch = Batch.from_atoms(_systems(systems), device="cpu")
    full = _evaluate(MODELS[name](), batch, False, monkeypatch)
    half = _evaluate(MODELS[name](), batch, True, monkeypatch)
    _assert_close(half, full)


@pytest.mark.parametrize("systems", ["ragged", "large-box"], ids=["system-shares", "chunks"])
def test_without_per_atom_energies_the_energy_and_forces_stay(systems, monkeypatch, chunks_from_108_rows):
    """Not asked for per-atom energies, the kernel writes no partner's share: the systems' energies
    agree to round-off, the forces and stress are the same bits, and no "energies" come back."""
    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 4)
    batch = Batch.from_atoms(_systems(systems), device="cpu")
    model = MODELS["lj-smooth"]()
    asked = evaluate(model, batch, PROPERTIES)
    skipped = evaluate(model, batch, ("energy", "forces", "stress"))
    assert "energies" not in skipped
    assert torch.equal(skipped["forces"].nan_to_num(), asked["forces"].nan_to_num())
    assert torch.equal(skipped["stress"].nan_to_num(), asked["stress"].nan_to_num())
    finite = torch.isfinite(asked["energy"])
    assert torch.equal(torch.isfinite(skipped["energy"]), finite)
    torch.testing.assert_close(skipped["energy"][finite], asked["energy"][finite], rtol=1e-13, atol=1e-13)
    neighbors = model.neighbor_list.update(batch)
    rows, _, _ = pair_kernel.pair_sums(
        model.kernel_terms,
        model.kernel_parameters(),
        batch.positions,
        neighbors,
        model.cutoff,
        atom_energies=False,
    )
    assert not torch.allclose(rows.nan_to_num(), asked["energies"].nan_to_num())  # not per-atom energies


def test_a_large_box_in_chunks_beside_small_systems_matches_ase(chunks_from_108_rows):
    model = LennardJones(**ARGON)
    systems = _systems("large-box")
    assert_matches_ase(model, lambda: AseLennardJones(**ARGON), systems)
    plans = model.neighbor_list._current.half.plans
    assert plans and all(plan.starts is not None for plan in plans.values())  # it ran in chunks


def test_morse_over_small_cells_matches_ase():
    model = Morse(epsilon=0.0104, rho0=6.0, r0=3.8)
    systems = [atoms for atoms in random_cells(10, seed=5) if atoms.pbc.all()] + ragged_systems(seed=13)
    for atoms in systems:
        atoms.set_chemical_symbols(["Ar"] * len(atoms))
    assert_matches_ase(model, lambda: MorsePotential(epsilon=0.0104, rho0=6.0, r0=3.8), systems)
    assert "half" in model.neighbor_list._current.__dict__


def test_each_pair_of_the_full_list_is_in_the_half_once():
    batch = Batch.from_atoms(ragged_systems(seed=14) + random_cells(6, seed=7), device="cpu")
    neighbors = LennardJones(**ARGON).neighbor_list.update(batch)
    i, j, shifts = neighbors.compact()
    vectors = torch.bmm(shifts.double().unsqueeze(1), batch.cell[batch.batch_idx[i]]).squeeze(1)
    full = {(a, b, *np.round(v, 8)) for a, b, v in zip(i.tolist(), j.tolist(), vectors.numpy(), strict=True)}
    half = neighbors.half
    kept = []
    for a, count in enumerate(half.counts.tolist()):
        for k in range(count):
            b = int(half.matrix[a, k])
            assert b <= a  # a partner is an earlier row (or the atom itself in another image)
            kept.append((a, b, *np.round(half.table[half.slots[a, k], :3].numpy(), 8)))
    mirrored = [(b, a, *(-np.asarray(v) + 0.0)) for a, b, *v in kept]
    assert len(set(kept)) == len(kept) == len(full) // 2
    assert set(kept) | set(mirrored) == full
    assert torch.all(half.table[:, 3] == 0.0)  # the padding the kernel adds to r² as 0²


@pytest.fixture
def torch_threads():
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


@pytest.mark.parametrize("systems", ["ragged", "large-box"], ids=["system-shares", "chunks"])
def test_half_list_bits_do_not_depend_on_the_threads(
    systems, monkeypatch, torch_threads, chunks_from_108_rows
):
    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 4)  # small systems: a share each
    batch = Batch.from_atoms(_systems(systems), device="cpu")
    model = MODELS["lj-smooth"]()
    results = {}
    for threads in (1, 2, 3):
        torch_threads(threads)
        results[threads] = evaluate(model, batch, PROPERTIES)
    plans = model.neighbor_list._current.half.plans
    assert [len(plan.shares) for plan in plans.values()] == [1, 2, 3]  # the rows really were split
    assert all((plan.starts is not None) == (systems == "large-box") for plan in plans.values())
    for threads in (2, 3):
        for key in KEYS:
            assert torch.equal(results[threads][key].nan_to_num(), results[1][key].nan_to_num()), key


def _with_velocities(systems, seed=0):
    rng = np.random.default_rng(seed)
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=0.02, size=(len(atoms), 3)))
    return systems


def _nve(systems, half: bool, threads: int, monkeypatch) -> tuple[Batch, int]:
    monkeypatch.setattr(pair_kernel, "HALF_LIST_ON_CPU", half)
    torch.set_num_threads(threads)
    model = LennardJones(**ARGON, ro=6.0, smooth=True, skin=0.3)
    batch = Batch.from_atoms(systems, device="cpu")
    NVE(model, dt=2.0).run(batch, n_steps=300)
    return batch, model.neighbor_list.rebuilds


def test_nve_over_a_reused_half_list_follows_the_full_list_and_keeps_its_bits(
    monkeypatch, torch_threads, chunks_from_108_rows
):
    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 4)
    systems = _with_velocities(_systems("large-box"), seed=3)
    full, _ = _nve(systems, False, 1, monkeypatch)
    alone, rebuilds = _nve(systems, True, 1, monkeypatch)
    split, _ = _nve(systems, True, 3, monkeypatch)
    systems_count = len(systems)
    assert systems_count < rebuilds < 300 * systems_count / 10  # rebuilt now and then, reused in between
    torch.testing.assert_close(alone.positions, full.positions, rtol=0, atol=1e-9)
    torch.testing.assert_close(alone.energy, full.energy, rtol=1e-10, atol=1e-12)
    for key in ("positions", "velocities", "forces", "energy"):
        assert torch.equal(getattr(split, key), getattr(alone, key)), key


@pytest.mark.gpu
def test_cuda_keeps_the_full_list():
    model = MODELS["lj-smooth"]()
    batch = Batch.from_atoms(ragged_systems(seed=15), device="cuda")
    gpu = evaluate(model, batch, ("energy", "forces", "stress"))
    assert "half" not in model.neighbor_list.update(batch).__dict__
    cpu = evaluate(MODELS["lj-smooth"](), Batch.from_atoms(ragged_systems(seed=15), device="cpu"))
    torch.testing.assert_close(gpu["forces"].cpu(), cpu["forces"], rtol=1e-12, atol=1e-14)


def _real_rows(half) -> list:
    """Each row's real (partner, image vector) pairs, in slot order: what a kernel reads."""
    rows = []
    for a, count in enumerate(half.counts.tolist()):
        partners = half.matrix[a, :count].tolist()
        vectors = half.table[half.slots[a, :count].long()].tolist()
        rows.append((partners, vectors, int(half.lowest[a])))
    return rows


def test_atoms_that_crossed_their_cells_face_keep_the_table_of_their_system():
    """A shift one image beyond the rows' largest (atoms moved to their image across the cell's
    face, as an unwrapped run's atoms drift) is within the table's margin: the half list is
    rewritten in place, as one made afresh."""
    from nvalchemi_ase.neighbors.half import half_list

    cluster = argon_bulk(1, seed=9, rattle=0.05)
    cluster.pbc = False  # no pair across a face: its table keeps its one image
    systems = [*(argon_bulk(2, seed=k, rattle=0.05) for k in range(3)), cluster]
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms(systems, device="cpu")
    first = model.neighbor_list.update(batch)
    earlier = first.half
    reach = earlier.layout.system_reach.clone()
    assert reach[3] == 0
    moved = batch.positions.clone()
    a1 = batch.cell[1, 0]
    near_face = (batch.batch_idx == 1) & (moved @ a1 < 0.3 * a1.dot(a1))
    moved[near_face] -= a1  # the same crystal, those atoms one image along -a1
    batch.positions = moved
    rebuilt = model.neighbor_list.update(batch)
    _, _, shifts = rebuilt.compact()
    assert int(shifts.abs().max()) == int(reach[1])  # one image farther than the rows reached
    half = rebuilt.half
    assert half is earlier and torch.equal(half.layout.system_reach, reach)
    fresh = half_list(rebuilt.raw_matrix, rebuilt.raw_shifts, rebuilt.raw_counts, batch.cell, batch.batch_idx)
    assert _real_rows(half) == _real_rows(fresh)


def test_a_partial_rebuild_rewrites_only_its_systems_rows_of_the_half_list():
    """After some systems are rebuilt (moved, or replaced by a refill with a new cell) the
    rewritten half list reads as one derived afresh from the rebuilt full list."""
    from nvalchemi_ase.neighbors.half import half_list

    systems = [argon_bulk(2, seed=k, rattle=0.05) for k in range(4)]
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms(systems, device="cpu")
    first = model.neighbor_list.update(batch)
    earlier = first.half
    moved = batch.positions.clone()
    moved[batch.batch_idx == 1] += 0.8  # past skin/2: system 1 is rebuilt
    batch.positions = moved
    cell = batch.cell.clone()
    cell[3] *= 1.01  # a new cell: system 3 is rebuilt, its part of the table too
    batch.cell = cell
    rebuilt = model.neighbor_list.update(batch)
    assert rebuilt is not first
    half = rebuilt.half
    assert half is earlier  # rewritten in place, not derived again
    fresh = half_list(rebuilt.raw_matrix, rebuilt.raw_shifts, rebuilt.raw_counts, batch.cell, batch.batch_idx)
    assert _real_rows(half) == _real_rows(fresh)
    assert torch.equal(half.table, fresh.table)
    assert torch.equal(half.counts, fresh.counts) and not half.plans
    energy = evaluate(model, batch, ("energy",))["energy"]
    ase = []
    for k in range(4):
        atoms = batch.to_atoms()[k]
        atoms.calc = AseLennardJones(**ARGON)
        ase.append(atoms.get_potential_energy())
    np.testing.assert_allclose(energy.view(-1).numpy(), ase, rtol=1e-12)


@pytest.mark.parametrize("chunked", [False, True])
def test_a_plan_serves_rewritten_rows_as_long_as_it_holds(chunked, monkeypatch):
    """A plan of whole systems is kept over rewrites (until REBALANCE_AFTER of them), one of
    chunks is made again at each; either way the results are those of a model made afresh."""
    if chunked:
        monkeypatch.setattr(pair_half_kernel, "LARGE_SYSTEM", 64)  # the 108-atom box: in chunks
    monkeypatch.setattr(pair_half_kernel, "REBALANCE_AFTER", 3)
    systems = [argon_bulk(3, seed=0, rattle=0.05), *[argon_bulk(2, seed=k, rattle=0.05) for k in range(1, 4)]]
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms(systems, device="cpu")
    plans = []
    for rewrite in range(5):
        results = evaluate(model, batch, ("energy", "forces"))
        half = model.neighbor_list._current.half
        assert half.rewrites == rewrite  # rewritten in place each time, never derived afresh
        (plan,) = half.plans.values()
        plans.append(plan)
        fresh = evaluate(LennardJones(**ARGON), batch, ("energy", "forces"))
        assert torch.equal(results["forces"], fresh["forces"])
        assert torch.equal(results["energy"], fresh["energy"])
        moved = batch.positions.clone()
        moved[batch.batch_idx == 1 + rewrite % 3] += 0.4 * (-1) ** rewrite  # past skin/2: one system
        batch.positions = moved
    kept = [plans[k] is plans[k - 1] for k in range(1, 5)]
    assert kept == ([False] * 4 if chunked else [True, True, False, True])


def test_a_half_list_is_derived_afresh_when_a_rebuilt_system_reaches_farther():
    from nvalchemi_ase.neighbors import half as half_module

    systems = [argon_bulk(2, seed=k) for k in range(2)]
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms(systems, device="cpu")
    earlier = model.neighbor_list.update(batch).half
    cell = batch.cell.clone()
    cell[0] *= 0.6  # a smaller cell: its pairs reach farther images than its table holds
    batch.cell = cell
    neighbors = model.neighbor_list.update(batch)
    systems_rebuilt = np.array([0])
    assert (
        half_module.updated_half(
            earlier,
            neighbors.raw_matrix,
            neighbors.raw_shifts,
            neighbors.raw_counts,
            batch.cell,
            batch.batch_idx,
            systems_rebuilt,
        )
        is None
    )
    assert neighbors.half is not earlier
    assert neighbors.half.layout.system_reach[0] > earlier.layout.system_reach[0]


def test_positions_laid_out_with_gaps_give_the_same_bits():
    """Positions that are a view with a row stride of 4 (not contiguous) are copied for the kernels
    and held while they run."""
    batch = Batch.from_atoms(_systems("ragged"), device="cpu")
    model = MODELS["lj-shifted"]()
    neighbors = model.neighbor_list.update(batch)
    padded = torch.nn.functional.pad(batch.positions, (0, 1))
    assert not padded[:, :3].is_contiguous()
    results = [
        pair_kernel.pair_sums(model.kernel_terms, model.kernel_parameters(), rows, neighbors, model.cutoff)
        for rows in (batch.positions, padded[:, :3])
    ]
    assert "half" in neighbors.__dict__
    for ours, theirs in zip(*results, strict=True):
        assert torch.equal(ours.nan_to_num(), theirs.nan_to_num())


def _largest_components(forces: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Each system's largest absolute force component, by torch (0 for a system without atoms' forces)."""
    zero = torch.zeros(batch.num_graphs, dtype=torch.float64)
    return zero.scatter_reduce(0, batch.batch_idx, forces.abs().amax(dim=1), "amax")


@pytest.mark.parametrize("systems", ["ragged", "small-cells", "large-box"])
def test_the_forces_bound_is_each_systems_largest_force_component(systems, chunks_from_108_rows):
    batch = Batch.from_atoms(_systems(systems), device="cpu")
    results = evaluate(LennardJones(**ARGON), batch, ("energy", "forces", FORCES_BOUND))
    assert torch.equal(results[FORCES_BOUND], _largest_components(results["forces"], batch))
    assert (results[FORCES_BOUND] > 0).sum() >= batch.num_graphs - 1  # one lone atom feels nothing


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
@pytest.mark.parametrize("systems", ["ragged", "large-box"])
def test_the_forces_bound_is_nan_for_a_system_with_results_not_finite(bad, systems, chunks_from_108_rows):
    batch = Batch.from_atoms(_systems(systems), device="cpu")
    positions = batch.positions.clone()
    positions[int(batch.ptr[1]) + 1, 0] = bad  # system 1's second atom
    batch.positions = positions
    results = evaluate(LennardJones(**ARGON), batch, ("energy", "forces", FORCES_BOUND))
    bound = results[FORCES_BOUND]
    assert bound[1].isnan() and not results["forces"][batch.batch_idx == 1].isfinite().all()
    others = torch.arange(batch.num_graphs) != 1
    assert torch.equal(bound[others], _largest_components(results["forces"], batch)[others])


def test_the_forces_bound_is_given_only_where_the_half_list_kernel_runs(monkeypatch):
    batch = Batch.from_atoms(ragged_systems(seed=11), device="cpu")
    asked = ("energy", "forces", FORCES_BOUND)
    assert FORCES_BOUND not in evaluate(LennardJones(**ARGON), batch, ("energy", "forces"))
    assert FORCES_BOUND not in evaluate(LennardJones(**ARGON, use_kernel=False), batch, asked)
    assert FORCES_BOUND not in evaluate(LennardJones(**ARGON), batch.to(dtype=torch.float32), asked)
    monkeypatch.setattr(pair_kernel, "HALF_LIST_ON_CPU", False)
    assert FORCES_BOUND not in evaluate(LennardJones(**ARGON), batch, asked)
    with pytest.raises(ValueError, match="half-list kernel only"):
        model = LennardJones(**ARGON)
        neighbors = model.neighbors(batch)
        energy = torch.empty(batch.num_graphs, dtype=torch.float64)
        pair_kernel.pair_sums(
            model.kernel_terms,
            model.kernel_parameters(),
            batch.positions,
            neighbors,
            model.cutoff,
            system_energies=energy,
            forces_bound=torch.empty_like(energy),
        )
