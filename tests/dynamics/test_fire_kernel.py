"""FIRE's kernel step against the torch step on every branch, with and without members.

The two agree bit for bit but for square roots: the kernel's are the CPU's own (correctly
rounded, as numpy's and so ASE's), torch's vectorised CPU ``sqrt`` is at times one unit in the
last place off; a norm one ulp apart moves a capped step or FIRE's mixing by about as much.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops import fire as torch_fire
from nvalchemi_ase.ops import fire_kernel
from nvalchemi_ase.ops.fire import FireParameters, FireState
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
PARAMS = FireParameters(maxstep=0.2, dtmax=1.0, Nmin=5, finc=1.1, fdec=0.5, astart=0.1, fa=0.99)


def _random_case(seed: int, counts=(3, 1, 7, 4, 2)):
    """Rows and a state that reach every branch: not started, downhill past Nmin, uphill, capped steps."""
    generator = torch.Generator().manual_seed(seed)
    num, atoms = len(counts), sum(counts)
    ptr = torch.tensor([0, *torch.tensor(counts).cumsum(0).tolist()], dtype=torch.int64)
    batch_idx = torch.repeat_interleave(torch.arange(num), torch.tensor(counts))
    velocities = torch.randn(atoms, 3, generator=generator, dtype=torch.float64)
    forces = torch.randn(atoms, 3, generator=generator, dtype=torch.float64)
    forces[batch_idx == 1] = -velocities[batch_idx == 1]  # power < 0: uphill
    forces[batch_idx == 2] *= 50.0  # a step longer than maxstep
    state = FireState(
        velocities,
        torch.rand(num, generator=generator, dtype=torch.float64) + 0.05,
        torch.rand(num, generator=generator, dtype=torch.float64) * 0.2,
        torch.tensor([-1, 3, 9, 6, 0], dtype=torch.int64)[:num],
    )
    positions = torch.randn(atoms, 3, generator=generator, dtype=torch.float64) * 5.0
    return positions, forces, state, ptr, batch_idx


def _assert_same(got, expected):
    """Equal to a few units in the last place (the square roots), counters exactly."""
    (positions, state), (positions_ref, state_ref) = got, expected
    torch.testing.assert_close(positions, positions_ref, rtol=1e-15, atol=0)
    for name, value, reference in zip(FireState._fields, state, state_ref, strict=True):
        torch.testing.assert_close(value, reference, rtol=1e-15, atol=0, msg=name)


def test_square_roots_are_correctly_rounded():
    """The one known difference from the torch step: the kernel's norm is numpy's, bit for bit."""
    positions, forces, state, ptr, batch_idx = _random_case(3)  # torch's sqrt is 1 ulp off here
    members = torch.ones(len(ptr) - 1, dtype=torch.bool)
    new_positions, new_state = fire_kernel.fire_step(positions, forces, state, PARAMS, ptr, members)
    system = batch_idx == 2
    dr = (new_state.dt[2] * new_state.velocities[system]).numpy()
    shrink = PARAMS.maxstep * (1.0 / np.sqrt(np.sum(np.sum(dr * dr, axis=1))))  # sequential: 7 rows
    assert np.array_equal(new_positions[system].numpy(), positions[system].numpy() + dr * shrink)


@pytest.mark.parametrize("seed", range(4))
def test_kernel_step_is_the_torch_step(seed):
    positions, forces, state, ptr, batch_idx = _random_case(seed)
    members = torch.ones(len(ptr) - 1, dtype=torch.bool)
    got = fire_kernel.fire_step(positions, forces, state, PARAMS, ptr, members)
    expected = torch_fire.fire_step(positions, forces, state, PARAMS, batch_idx)
    _assert_same(got, expected)
    assert not torch.equal(got[0], positions)


def test_kernel_step_leaves_non_members_as_they_were():
    positions, forces, state, ptr, batch_idx = _random_case(7)
    members = torch.tensor([True, False, True, False, True])
    new_positions, new_state = fire_kernel.fire_step(positions, forces, state, PARAMS, ptr, members)
    stepped_positions, stepped = torch_fire.fire_step(positions, forces, state, PARAMS, batch_idx)
    atoms = members[batch_idx]
    torch.testing.assert_close(new_positions[atoms], stepped_positions[atoms], rtol=1e-15, atol=0)
    assert torch.equal(new_positions[~atoms], positions[~atoms])
    assert torch.equal(new_state.velocities[~atoms], state.velocities[~atoms])
    torch.testing.assert_close(new_state.velocities[atoms], stepped.velocities[atoms], rtol=1e-15, atol=0)
    for new, old, ref in zip(new_state[1:], state[1:], stepped[1:], strict=True):
        assert torch.equal(new[~members], old[~members])
        torch.testing.assert_close(new[members], ref[members], rtol=1e-15, atol=0)


def test_kernel_declines_what_it_does_not_take():
    positions, forces, state, _, _ = _random_case(0)
    assert fire_kernel.fits(positions, forces, state, PARAMS)
    assert not fire_kernel.fits(positions.float(), forces, state, PARAMS)
    assert not fire_kernel.fits(positions, forces.t().contiguous().t(), state, PARAMS)
    assert not fire_kernel.fits(positions, forces, state, PARAMS._replace(maxstep=torch.full((5,), 0.2)))


def _relax(systems, steps: int, kernel: bool, monkeypatch) -> Batch:
    if not kernel:
        monkeypatch.setattr(FIRE, "_kernel_step", lambda self, batch, members: False)
    engine = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-3))
    batch = engine.run(Batch.from_atoms(systems, device="cpu"), n_steps=steps)
    monkeypatch.undo()
    return batch


def test_engine_runs_are_those_of_the_torch_step(monkeypatch):
    """Whole relaxations (convergence masks included) follow the torch path to round-off."""
    systems = [argon_bulk(2, seed=k, rattle=0.2) for k in range(2)] + ragged_systems(seed=3)[1:4]
    with_kernel = _relax(systems, 40, True, monkeypatch)
    with_torch = _relax(systems, 40, False, monkeypatch)
    assert torch.equal(with_kernel.fire_n, with_torch.fire_n)  # the same branches, step by step
    for name in ("positions", "fire_velocities", "fire_dt", "fire_a", "forces"):
        kernel, plain = getattr(with_kernel, name), getattr(with_torch, name)
        torch.testing.assert_close(kernel, plain, rtol=1e-12, atol=1e-14, msg=name)


@pytest.mark.parametrize("converging", [True, False])
def test_plain_fire_steps_find_the_kernels_recorded_launch_again(converging, monkeypatch):
    """The step's member mask lives in the same memory each step (a new one made every step
    re-packed the kernel's launch: ~30 µs on a CPU)."""
    from nvalchemi_ase.ops import warp_launch

    hook = ConvergenceHook.from_fmax(1e-12) if converging else None
    engine = FIRE(LennardJones(**ARGON), convergence_hook=hook)
    batch = engine.run(Batch.from_atoms([argon_bulk(1, seed=k, rattle=0.002) for k in range(3)]), n_steps=10)
    recorded = []
    original = warp_launch._direct
    monkeypatch.setattr(warp_launch, "_direct", lambda command: recorded.append(command) or original(command))
    engine.run(batch, n_steps=20)
    assert [command.kernel.key for command in recorded if "fire" in command.kernel.key] == []
