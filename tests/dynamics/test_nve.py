"""NVE (velocity Verlet) against ASE's VelocityVerlet, and its physics invariants."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.verlet import VelocityVerlet

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, DemoDynamics
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.thermo import kinetic_energy
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
TRAJECTORY_ATOL = 1e-10  # Å over 200 steps, the figure


def _with_velocities(systems, scale=0.01, seed=0):
    rng = np.random.default_rng(seed)
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=scale, size=(len(atoms), 3)))
    return systems


@pytest.mark.parametrize("smooth", [True, False])
def test_ragged_batch_equals_ase_velocity_verlet_step_by_step(smooth):
    params = {**ARGON, "smooth": smooth}
    systems = _with_velocities(ragged_systems())
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVE(LennardJones(**params), dt=2.0)
    engine.run(batch, n_steps=0)  # prime forces
    references = []
    for atoms in systems:
        reference = atoms.copy()
        reference.calc = AseLennardJones(**params)
        references.append((reference, VelocityVerlet(reference, 2.0 * units.fs)))
    ptr = batch.ptr.tolist()
    for step in range(200):
        engine.step()
        for _, md in references:
            md.run(1)
        if step % 20 == 19:
            for b, (reference, _) in enumerate(references):
                ours = batch.positions[ptr[b] : ptr[b + 1]].numpy()
                np.testing.assert_allclose(
                    ours,
                    reference.positions,
                    rtol=0,
                    atol=TRAJECTORY_ATOL,
                    err_msg=f"step {step}, system {b}",
                )
                np.testing.assert_allclose(
                    batch.velocities[ptr[b] : ptr[b + 1]].numpy(),
                    reference.get_velocities(),
                    rtol=0,
                    atol=1e-12,
                )
    for b, (reference, _) in enumerate(references):
        assert batch.energy[b, 0].item() == pytest.approx(reference.get_potential_energy(), rel=1e-10)


def test_a_system_alone_equals_itself_inside_a_batch_in_any_order():
    systems = _with_velocities(ragged_systems(seed=3), seed=4)
    together = Batch.from_atoms(systems, device="cpu")
    reverse = Batch.from_atoms(systems[::-1], device="cpu")
    NVE(LennardJones(**ARGON), dt=2.0).run(together, n_steps=50)
    NVE(LennardJones(**ARGON), dt=2.0).run(reverse, n_steps=50)
    for b, atoms in enumerate(systems):
        alone = Batch.from_atoms(atoms, device="cpu")
        NVE(LennardJones(**ARGON), dt=2.0).run(alone, n_steps=50)
        in_batch = together.positions[together.batch_idx == b]
        in_reverse = reverse.positions[reverse.batch_idx == len(systems) - 1 - b]
        torch.testing.assert_close(in_batch, alone.positions, rtol=0, atol=1e-12)
        torch.testing.assert_close(in_reverse, alone.positions, rtol=0, atol=1e-12)


def _total_energy(batch):
    return batch.energy.view(-1) + kinetic_energy(
        batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs
    )


def test_energy_drift_is_bounded_with_smooth_lj():
    systems = _with_velocities([argon_bulk(2, seed=k) for k in range(4)], scale=0.02, seed=5)
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVE(LennardJones(**ARGON), dt=2.0)
    engine.run(batch, n_steps=0)
    start = _total_energy(batch)
    worst = torch.zeros_like(start)
    for _ in range(10):
        engine.run(batch, n_steps=50)
        worst = torch.maximum(worst, (_total_energy(batch) - start).abs())
    per_atom = worst / torch.as_tensor(batch.counts, dtype=torch.float64)
    assert (per_atom < 2e-5).all(), per_atom  # eV/atom over 500 steps of 2 fs


def test_time_reversibility():
    batch = Batch.from_atoms(_with_velocities([argon_bulk(2, seed=6)], scale=0.02), device="cpu")
    start = batch.positions.clone()
    engine = NVE(LennardJones(**ARGON), dt=2.0)
    engine.run(batch, n_steps=100)
    assert (batch.positions - start).abs().max() > 0.05  # it went somewhere
    batch.velocities = -batch.velocities
    engine.run(batch, n_steps=100)
    torch.testing.assert_close(batch.positions, start, rtol=0, atol=1e-9)


def test_momentum_is_conserved_per_system():
    batch = Batch.from_atoms(_with_velocities(ragged_systems(seed=7), seed=8), device="cpu")

    def momenta():
        from nvalchemi_ase.ops import segment_sum

        return segment_sum(batch.velocities * batch.masses.unsqueeze(1), batch.batch_idx, batch.num_graphs)

    before = momenta()
    NVE(LennardJones(**ARGON), dt=2.0).run(batch, n_steps=100)
    torch.testing.assert_close(momenta(), before, rtol=0, atol=1e-10)


def test_demo_dynamics_is_velocity_verlet_in_fs():
    a = Batch.from_atoms(_with_velocities([argon_bulk(1, seed=1)]), device="cpu")
    b = a.clone()
    DemoDynamics(model=LennardJones(**ARGON), n_steps=10, dt=0.5).run(a)
    NVE(LennardJones(**ARGON), dt=0.5, n_steps=10).run(b)
    assert torch.equal(a.positions, b.positions)
