"""The velocity-Verlet kernels against the torch moves, the skin test they fold in, and thread counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, BaseDynamics
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.neighbors import NeighborList
from nvalchemi_ase.ops import kernel_threads, verlet, verlet_kernel, warp_launch
from nvalchemi_ase.units import fs
from tests.structures import argon_bulk, ragged_systems

DT = 2.0 * fs


def _state(n: int = 500, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    positions = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 10.0
    velocities = torch.randn(n, 3, generator=generator, dtype=torch.float64) * 0.01
    forces = torch.randn(n, 3, generator=generator, dtype=torch.float64)
    masses = torch.rand(n, generator=generator, dtype=torch.float64) * 50.0 + 1.0
    return positions, velocities, forces, masses


@pytest.fixture
def torch_threads():
    """Restores torch's thread count after a test changes it."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


def test_kicks_equal_the_torch_move_bit_for_bit_and_the_drift_is_plain_ieee():
    positions, velocities, forces, masses = _state()
    new_positions, new_velocities = verlet_kernel.kick_drift(positions, velocities, forces, masses, DT)
    kicked = verlet.half_kick(velocities, forces, masses, DT)
    assert torch.equal(new_velocities, kicked)
    # r + dt·v rounded twice, as numpy (and ASE) compute it; torch's vectorised add fuses the two
    assert np.array_equal(new_positions.numpy(), positions.numpy() + DT * kicked.numpy())
    torch.testing.assert_close(new_positions, verlet.drift(positions, kicked, DT), rtol=0, atol=1e-14)
    assert torch.equal(verlet_kernel.half_kick(velocities, forces, masses, DT), kicked)
    assert new_positions is not positions and new_velocities is not velocities  # new tensors


@pytest.mark.parametrize("limit", [0.1, 0.2, 0.3])
def test_the_skin_flag_is_set_exactly_when_an_atom_lands_past_the_limit(limit):
    positions, velocities, forces, masses = _state(n=64, seed=1)
    reference = positions.clone()
    reference[5] -= 0.2  # that atom is 0.2·√3 ≈ 0.35 Å from its reference after the drift, give or take
    flag = torch.zeros(1, dtype=torch.int32)
    new_positions, _ = verlet_kernel.kick_drift(
        positions, velocities, forces, masses, DT, (reference, limit, flag)
    )
    displacement_sq = (new_positions - reference).square().sum(dim=1)
    assert bool(flag[0]) == bool((displacement_sq > limit**2).any())


def test_threads_split_the_rows_without_changing_a_bit(monkeypatch, torch_threads):
    positions, velocities, forces, masses = _state(n=301)
    reference = positions + 0.05
    torch_threads(1)
    flag_alone = torch.zeros(1, dtype=torch.int32)
    alone = verlet_kernel.kick_drift(positions, velocities, forces, masses, DT, (reference, 0.1, flag_alone))
    kick_alone = verlet_kernel.half_kick(velocities, forces, masses, DT)
    pools = []

    real_workers = kernel_threads.workers

    def counted_workers(count):
        pools.append(count)
        return real_workers(count)

    monkeypatch.setattr(verlet_kernel, "ROWS_PER_THREAD", 4)
    monkeypatch.setattr(kernel_threads, "workers", counted_workers)
    torch_threads(3)
    flag_split = torch.zeros(1, dtype=torch.int32)
    split = verlet_kernel.kick_drift(positions, velocities, forces, masses, DT, (reference, 0.1, flag_split))
    assert torch.equal(verlet_kernel.half_kick(velocities, forces, masses, DT), kick_alone)
    assert pools == [2, 2]  # both launches really were split in three: two workers and the calling thread
    assert all(torch.equal(a, b) for a, b in zip(alone, split, strict=True))
    assert torch.equal(flag_alone, flag_split)


def _argon_batch(count: int = 3) -> Batch:
    systems = []
    for seed in range(count):
        atoms = argon_bulk(3, seed=seed, rattle=0.05)
        atoms.set_velocities(np.random.default_rng(seed).normal(scale=0.02, size=(len(atoms), 3)))
        systems.append(atoms)
    return Batch.from_atoms(systems, device="cpu")


def _trajectory(batch: Batch, steps: int) -> tuple[list[torch.Tensor], list[int], NeighborList]:
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, skin=0.3)
    engine = NVE(model, dt=4.0)
    engine.run(batch, n_steps=0)
    rebuilds = []
    for _ in range(steps):
        engine.step(batch)
        rebuilds.append(model.neighbor_list.rebuilds)
    return [batch.positions, batch.velocities, batch.energy], rebuilds, model.neighbor_list


def test_nve_with_the_kernels_follows_the_torch_moves_and_rebuilds_on_the_same_steps(monkeypatch):
    fused, fused_rebuilds, _ = _trajectory(_argon_batch(), 60)
    monkeypatch.setattr(verlet_kernel, "fits", lambda *tensors: False)  # the torch moves and skin test
    plain, plain_rebuilds, _ = _trajectory(_argon_batch(), 60)
    assert fused_rebuilds == plain_rebuilds
    assert plain_rebuilds[-1] > plain_rebuilds[0]  # the skin was crossed on the way
    for ours, theirs in zip(fused, plain, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)


def test_nve_reads_the_kernels_skin_flag_instead_of_testing_again(monkeypatch):
    batch = _argon_batch(1)
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, skin=0.3)
    engine = NVE(model, dt=4.0)
    engine.run(batch, n_steps=1)

    def no_torch_test(*args):
        raise AssertionError("the skin was tested with torch operations again")

    monkeypatch.setattr(torch.Tensor, "square", no_torch_test)
    engine.step(batch)  # no atom near its limit yet: the flag alone decides


@pytest.mark.parametrize("grain", [1, 1 << 30])
def test_nves_second_kick_past_torchs_grain_is_the_kernel_with_the_same_bits(
    monkeypatch, torch_threads, grain
):
    """Past the grain torch would run the kick on its OpenMP threads: NVE then launches the kernel.
    (The kick after the model, as when hooks fire between them: not the pair kernel's own.)"""
    monkeypatch.setattr(NVE, "_forces_then_post_update", BaseDynamics._forces_then_post_update)
    torch_threads(2)
    monkeypatch.setattr(verlet_kernel, "TORCH_GRAIN", grain)
    real_kick = verlet_kernel.half_kick
    kernel_kicks = []

    def counted(*args, **kwargs):
        kernel_kicks.append(args[4] if len(args) > 4 else kwargs.get("members"))
        return real_kick(*args, **kwargs)

    monkeypatch.setattr(verlet_kernel, "half_kick", counted)
    state, rebuilds, _ = _trajectory(_argon_batch(), 20)
    assert len(kernel_kicks) == (20 if grain == 1 else 0) and not any(kernel_kicks)  # unmasked kicks
    monkeypatch.setattr(verlet_kernel, "TORCH_GRAIN", 1 << 30 if grain == 1 else 1)
    other, other_rebuilds, _ = _trajectory(_argon_batch(), 20)
    assert rebuilds == other_rebuilds
    for a, b in zip(state, other, strict=True):
        assert torch.equal(a, b)


def test_positions_written_after_the_kernel_are_tested_again():
    batch = _argon_batch(1)
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, skin=0.3)
    engine = NVE(model, dt=1.0)
    engine.run(batch, n_steps=1)
    neighbor_list = model.neighbor_list
    before = neighbor_list.rebuilds
    engine.pre_update(batch)  # the kernel finds no atom past skin/2 ...
    assert neighbor_list._probed is not None and not neighbor_list._flag_host[0]
    batch.positions[7] += 0.2  # ... then an atom is moved past it in place
    neighbor_list.update(batch)
    assert neighbor_list.rebuilds == before + 1


def test_skin_probe_is_offered_only_where_the_host_decides():
    batch = Batch.from_atoms(ragged_systems(), device="cpu")
    listed = NeighborList(8.5, skin=0.5)
    assert listed.skin_probe(batch.positions) is None  # nothing built yet
    listed.update(batch)
    reference, limit, flag = listed.skin_probe(batch.positions)
    assert limit == 0.25 and flag.dtype == torch.int32 and reference.shape == batch.positions.shape
    assert listed.skin_probe(batch.positions[:-1]) is None  # another layout
    unchecked = NeighborList(8.5, skin=0.5, sync_check=False)  # decided on the device, as on CUDA
    unchecked.update(batch)
    assert unchecked.skin_probe(batch.positions) is None


def test_nve_results_are_identical_with_one_and_two_threads(monkeypatch, torch_threads):
    monkeypatch.setattr(verlet_kernel, "ROWS_PER_THREAD", 16)
    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 16)
    runs = []
    for threads in (1, 2):
        torch_threads(threads)
        state, rebuilds, _ = _trajectory(_argon_batch(), 30)
        runs.append((state, rebuilds))
    (one, one_rebuilds), (two, two_rebuilds) = runs
    assert one_rebuilds == two_rebuilds
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_kernels_on_cuda_equal_cpu():
    state = _state()
    cpu = verlet_kernel.kick_drift(*state, DT)
    gpu = verlet_kernel.kick_drift(*(tensor.cuda() for tensor in state), DT)
    for ours, theirs in zip(gpu, cpu, strict=True):
        assert torch.equal(ours.cpu(), theirs)


def test_recorded_launches_reused_and_repacked_give_the_moves_of_their_own_arguments():
    # more sets of arguments than a row range keeps recorded launches for: the oldest is re-packed
    # with the new views, and its argument struct packed again with them
    states = [_state(seed=seed) for seed in range(warp_launch._VARIANTS + 4)]
    for _ in range(2):
        for positions, velocities, forces, masses in states:
            kicked = verlet.half_kick(velocities, forces, masses, DT)
            _, new_velocities = verlet_kernel.kick_drift(positions, velocities, forces, masses, DT)
            assert torch.equal(new_velocities, kicked)
            assert torch.equal(verlet_kernel.half_kick(velocities, forces, masses, DT), kicked)
    (launcher,) = {
        type(entry[1]).__name__
        for key, variants in warp_launch._LAUNCHES.items()
        if key[3].type == "cpu"
        for entry in variants.values()
    }
    assert launcher == "_CpuLaunch"  # warp's per-call packing is skipped on a CPU


def test_masked_moves_copy_the_other_systems_and_test_every_row_for_the_skin():
    positions, velocities, forces, masses = _state(60)
    system = torch.arange(60) // 20  # three systems of 20 atoms
    members = torch.tensor([True, False, True])
    moving = members[system]
    flags = []
    for offset in (0.0, 2.0):  # then only a non-member's rows lie past the limit
        reference = positions.clone()
        reference[~moving] += offset
        flag = torch.zeros(1, dtype=torch.int32)
        new_positions, new_velocities = verlet_kernel.kick_drift(
            positions, velocities, forces, masses, DT, (reference, 1.0, flag), (system, members)
        )
        flags.append(int(flag[0]))
    assert flags == [0, 1]  # the rows that stayed were tested too
    plain_positions, plain_velocities = verlet_kernel.kick_drift(positions, velocities, forces, masses, DT)
    assert torch.equal(new_positions[moving], plain_positions[moving])
    assert torch.equal(new_velocities[moving], plain_velocities[moving])
    assert torch.equal(new_positions[~moving], positions[~moving])
    assert torch.equal(new_velocities[~moving], velocities[~moving])
    kicked = verlet_kernel.half_kick(velocities, forces, masses, DT, (system, members))
    assert torch.equal(kicked[moving], verlet_kernel.half_kick(velocities, forces, masses, DT)[moving])
    assert torch.equal(kicked[~moving], velocities[~moving])
