"""Inflight batching: a long sequence streams through a fused pipeline, each structure exactly once."""

from __future__ import annotations

import numpy as np
import pytest
from ase.build import bulk

from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, HostMemory, InflightSampler
from nvalchemi_ase.dynamics.inflight import estimate_pairs
from nvalchemi_ase.models import LennardJones

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def _structures(count=50, seed=0):
    rng = np.random.default_rng(seed)
    made = []
    for k in range(count):
        size = (1, 1, 1) if k % 3 else (2, 1, 1)
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(size)  # 4 or 8 atoms
        atoms.rattle(0.02 + 0.2 * rng.random(), seed=k)
        made.append(atoms)
    return made


def test_fifty_structures_eight_at_a_time_each_once_in_input_order():
    structures = _structures()
    model = LennardJones(**ARGON)
    fused = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=200) + NVE(
        model, dt=2.0, n_steps=10
    )
    sink = HostMemory(capacity=100)
    sampler = InflightSampler(structures, max_systems=8, device="cpu")
    seen_sizes: list[int] = []
    original_step = fused.step

    def watching(batch=None):
        seen_sizes.append(fused.batch.num_graphs)
        return original_step(batch)

    fused.step = watching
    results = fused.run_inflight(sampler, sinks=[sink])
    assert [r.info["system_id"] for r in results] == list(range(50))
    assert all(r.info["finished"] for r in results)
    stored = sink.read()
    assert sorted(stored.system_id.tolist()) == list(range(50))  # each written exactly once
    assert max(seen_sizes) == 8 and sampler.exhausted
    for original, result in zip(structures, results, strict=True):
        assert result.get_chemical_formula() == original.get_chemical_formula()
        assert np.isfinite(result.get_potential_energy())


def test_results_equal_running_each_structure_alone():
    structures = _structures(6, seed=1)
    model = LennardJones(**ARGON)

    def pipeline(m):
        return FIRE(m, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=200) + NVE(
            m, dt=2.0, n_steps=10
        )

    results = pipeline(model).run_inflight(InflightSampler(structures, max_atoms=12, device="cpu"))
    for original, result in zip(structures, results, strict=True):
        alone = pipeline(LennardJones(**ARGON)).run_inflight(
            InflightSampler([original], max_systems=1, device="cpu")
        )[0]
        np.testing.assert_allclose(result.positions, alone.positions, rtol=0, atol=1e-10)


def test_atom_budget_is_respected_and_too_large_structures_are_named():
    structures = _structures(12)
    sampler = InflightSampler(structures, max_atoms=16, device="cpu")
    taken = sampler.take()
    assert sum(len(a) for _, a in taken) <= 16 and [k for k, _ in taken] == list(range(len(taken)))
    too_big = [_structures(1)[0], bulk("Ar", "fcc", a=5.26, cubic=True).repeat((2, 1, 1))]  # 8 atoms
    sampler = InflightSampler(too_big, max_atoms=6, device="cpu")
    with pytest.raises(ValueError, match="structure 0 has 8 atoms, more than max_atoms=6"):
        sampler.take()


def test_pair_budget_uses_the_estimate():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    per_structure = estimate_pairs(atoms, 8.5)
    assert per_structure == pytest.approx(4 * 4 / atoms.get_volume() * 4 / 3 * np.pi * 8.5**3, rel=0.01)
    sampler = InflightSampler(
        [atoms.copy() for _ in range(5)],
        max_systems=5,
        max_pairs=2 * per_structure + 1,
        cutoff=8.5,
        device="cpu",
    )
    assert len(sampler.take()) == 2


def test_a_step_cap_returns_unfinished_systems_marked():
    structures = _structures(10)
    model = LennardJones(**ARGON)
    fused = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(1e-9), n_steps=50) + NVE(
        model, dt=2.0, n_steps=10
    )
    results = fused.run_inflight(InflightSampler(structures, max_systems=4, device="cpu"), n_steps=5)
    assert [r.info["system_id"] for r in results] == [0, 1, 2, 3]
    assert not any(r.info["finished"] for r in results)


def test_sampler_arguments():
    with pytest.raises(ValueError, match="max_atoms or max_systems"):
        InflightSampler([])
    with pytest.raises(ValueError, match="cutoff"):
        InflightSampler([], max_systems=2, max_pairs=10)
    assert InflightSampler([], max_systems=2).exhausted


def test_bfgs_state_of_different_widths_survives_refills():
    from nvalchemi_ase.dynamics import BFGS

    structures = _structures(6, seed=2)  # 4- and 8-atom systems: Hessians of different widths
    model = LennardJones(**ARGON)

    def pipeline(m):
        return BFGS(m, convergence_hook=ConvergenceHook.from_fmax(0.01), n_steps=100) + NVE(
            m, dt=2.0, n_steps=5
        )

    results = pipeline(model).run_inflight(InflightSampler(structures, max_systems=2, device="cpu"))
    for original, result in zip(structures, results, strict=True):
        alone = pipeline(LennardJones(**ARGON)).run_inflight(
            InflightSampler([original], max_systems=1, device="cpu")
        )[0]
        np.testing.assert_allclose(result.positions, alone.positions, rtol=0, atol=1e-9)


@pytest.mark.parametrize("same_size", [False, True])
def test_langevin_trajectories_do_not_depend_on_the_slot_count(same_size):
    """Counter-based noise: a system's MD noise follows its system_id, not its slot or batch mates.

    Structures of one size are refilled into the finished systems' slots; mixed sizes compact.
    """
    from nvalchemi_ase.dynamics import NVTLangevin

    structures = _structures(7, seed=2)
    if same_size:
        structures = [atoms for atoms in _structures(21, seed=5) if len(atoms) == 4][:7]

    def run(slots):
        model = LennardJones(**ARGON)
        pipeline = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=200) + NVTLangevin(
            model,
            dt=2.0,
            temperature=80.0,
            friction=0.02,
            seed=5,
            n_steps=10,
            initial_temperature=40.0,
            velocity_seed=1,
        )
        return pipeline.run_inflight(InflightSampler(structures, max_systems=slots, device="cpu"))

    for two, five in zip(run(2), run(5), strict=True):
        np.testing.assert_allclose(two.positions, five.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(two.get_velocities(), five.get_velocities(), rtol=0, atol=1e-9)


@pytest.mark.parametrize("same_size", [True, False])
def test_refills_build_the_neighbour_list_only_for_new_systems(monkeypatch, same_size):
    """Same atom counts: new systems take the finished ones' slots; else the batch is compacted.

    Either way the neighbour list builds the whole batch once, at the start,
    and no refill computes forces for the systems that stay.
    """
    from nvalchemi_ase.neighbors import NeighborList

    structures = _structures(12, seed=3)
    if same_size:
        structures = [atoms for atoms in structures if len(atoms) == 4]
    whole_builds, computes = [], []
    original_build = NeighborList._first_build

    def counted_build(self, batch):
        whole_builds.append(1)
        original_build(self, batch)

    monkeypatch.setattr(NeighborList, "_first_build", counted_build)
    from nvalchemi_ase.dynamics import inflight

    in_place = []
    original_put = inflight._put_into_slots

    def counted_put(*args):
        in_place.append(1)
        original_put(*args)

    monkeypatch.setattr(inflight, "_put_into_slots", counted_put)
    model = LennardJones(**ARGON)
    fused = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=200) + NVE(
        model, dt=2.0, n_steps=5
    )
    original_compute = fused.compute
    monkeypatch.setattr(fused, "compute", lambda batch: (computes.append(1), original_compute(batch))[1])
    steps = []
    results = fused.run_inflight(
        InflightSampler(structures, max_systems=3, device="cpu"), on_step=lambda atoms: steps.append(atoms)
    )
    assert [r.info["system_id"] for r in results] == list(range(len(structures)))
    assert len(whole_builds) == 1
    assert len(computes) == len(steps) + 1  # one per step, and the first batch's forces
    if same_size:  # new systems take the finished slots (the batch's per-atom energies do not stop it)
        assert in_place


def test_a_step_cap_returns_systems_finished_while_a_compaction_waited_as_finished():
    """Input exhausted: a compaction waits for a quarter of the batch; a cap first still reports them."""
    relaxed = bulk("Ar", "fcc", a=5.26, cubic=True)  # no force: converged at once
    structures = [relaxed] + [atoms for atoms in _structures(7, seed=4)]
    for atoms in structures[1:]:
        atoms.rattle(0.3, seed=len(atoms))
    model = LennardJones(**ARGON)
    fused = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=300) + NVE(
        model, dt=2.0, n_steps=3
    )
    sink = HostMemory(capacity=8)
    results = fused.run_inflight(InflightSampler(structures, max_systems=8, device="cpu"), [sink], n_steps=8)
    assert [r.info["finished"] for r in results] == [True] + [False] * 7
    assert sink.read().system_id.tolist() == [0]


@pytest.mark.parametrize("hydrostatic", [True, False])
def test_npt_barostat_state_travels_with_its_system_through_refills(hydrostatic):
    """p_ε and the cell force are per-system state: a refill around a system does not reset them."""
    from nvalchemi_ase.dynamics import LangevinBAOABNPT

    structures = _structures(7, seed=2)

    def run(slots):
        model = LennardJones(**ARGON)
        npt = LangevinBAOABNPT(
            model, dt=2.0, externalstress=-1e-3, hydrostatic=hydrostatic, temperature=60.0, T_tau=100.0,
            P_tau=200.0, seed=3, n_steps=12,
        )  # fmt: skip
        pipeline = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=200) + npt
        return pipeline.run_inflight(InflightSampler(structures, max_systems=slots, device="cpu"))

    two, five = run(2), run(5)
    for a, b in zip(two, five, strict=True):
        np.testing.assert_allclose(a.cell[:], b.cell[:], rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.positions, b.positions, rtol=0, atol=1e-9)
        np.testing.assert_allclose(a.get_velocities(), b.get_velocities(), rtol=0, atol=1e-9)
    moved = [
        abs(np.linalg.det(a.cell[:]) - np.linalg.det(s.cell[:])) for a, s in zip(two, structures, strict=True)
    ]
    assert min(moved) > 1e-6  # the barostat did work on every system
