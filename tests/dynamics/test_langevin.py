"""NVTLangevin: ASE's scheme (same numbers from the same random draws) and the right temperature."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.langevin import Langevin

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVTLangevin
from nvalchemi_ase.dynamics.noise import NumpyNoise
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.thermo import kinetic_energy, temperature
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


@pytest.mark.parametrize("fixcm", [False, True])
def test_equals_ase_langevin_given_the_same_draws(fixcm):
    systems = [argon_bulk(1, seed=k) for k in range(2)] + [argon_bulk(2, seed=5)]
    temperatures, frictions = [50.0, 120.0, 300.0], [0.01, 0.02, 0.005]
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVTLangevin(
        LennardJones(**ARGON),
        dt=2.0,
        temperature=torch.tensor(temperatures, dtype=torch.float64),
        friction=torch.tensor(frictions, dtype=torch.float64),
        fixcm=fixcm,
        noise=NumpyNoise([np.random.default_rng(10 + k) for k in range(3)]),
    )
    engine.run(batch, n_steps=150)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        _ase_langevin(reference, temperatures[b], frictions[b], 10 + b, fixcm).run(150)
        np.testing.assert_allclose(
            batch.positions[ptr[b] : ptr[b + 1]].numpy(), reference.positions, rtol=0, atol=1e-10
        )
        np.testing.assert_allclose(
            batch.velocities[ptr[b] : ptr[b + 1]].numpy(), reference.get_velocities(), rtol=0, atol=1e-10
        )


def _ase_langevin(atoms, temperature_k, friction, seed, fixcm):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # ASE deprecates fixcm=True; we reproduce it anyway
        return Langevin(
            atoms,
            2.0 * units.fs,
            temperature_K=temperature_k,
            friction=friction / units.fs,
            fixcm=fixcm,
            rng=np.random.default_rng(seed),
        )


def test_mean_temperature_over_many_systems():
    target = 80.0
    systems = [argon_bulk(1, seed=k, rattle=0.05) for k in range(48)]
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVTLangevin(LennardJones(**ARGON), dt=5.0, temperature=target, friction=0.02, seed=1)
    engine.run(batch, n_steps=300)  # equilibrate (1/γ = 50 fs)
    dof = torch.as_tensor(3.0 * batch.counts, dtype=torch.float64)
    samples = []
    for _ in range(40):
        engine.run(batch, n_steps=10)
        ke = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        samples.append(temperature(ke, dof))
    per_system = torch.stack(samples).mean(dim=0)  # time average per independent system
    mean = per_system.mean().item()
    standard_error = per_system.std().item() / np.sqrt(len(systems))
    assert abs(mean - target) < 4 * standard_error, (mean, standard_error)
    assert standard_error < 0.05 * target  # the test has power: errors of ~10% would fail


def test_per_system_temperatures():
    systems = [argon_bulk(1, seed=k, rattle=0.05) for k in range(16)]
    targets = torch.tensor([40.0] * 8 + [160.0] * 8)
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVTLangevin(LennardJones(**ARGON), dt=5.0, temperature=targets, friction=0.05, seed=2)
    engine.run(batch, n_steps=200)
    dof = torch.as_tensor(3.0 * batch.counts, dtype=torch.float64)
    samples = []
    for _ in range(30):
        engine.run(batch, n_steps=10)
        samples.append(temperature(kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, 16), dof))
    mean = torch.stack(samples).mean(dim=0)
    assert mean[:8].mean() == pytest.approx(40.0, rel=0.15)
    assert mean[8:].mean() == pytest.approx(160.0, rel=0.15)


def test_seeded_runs_repeat_and_differ_by_seed():
    def final(seed):
        batch = Batch.from_atoms(argon_bulk(1, seed=0), device="cpu")
        NVTLangevin(LennardJones(**ARGON), dt=2.0, temperature=100.0, friction=0.01, seed=seed).run(
            batch, n_steps=20
        )
        return batch.positions

    assert torch.equal(final(3), final(3))
    assert not torch.equal(final(3), final(4))


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"temperature": -1.0}, "temperature"), ({"friction": -0.1}, "friction")]
)
def test_bad_parameters(kwargs, match):
    params = {"temperature": 100.0, "friction": 0.01, **kwargs}
    with pytest.raises(ValueError, match=match):
        NVTLangevin(LennardJones(**ARGON), dt=1.0, **params)


def test_per_system_parameters_must_match_the_batch():
    batch = Batch.from_atoms([argon_bulk(1), argon_bulk(1)], device="cpu")
    engine = NVTLangevin(
        LennardJones(**ARGON), dt=1.0, temperature=torch.tensor([1.0, 2.0, 3.0]), friction=0.01
    )
    with pytest.raises(ValueError, match="3 values for 2 systems"):
        engine.run(batch, n_steps=1)
