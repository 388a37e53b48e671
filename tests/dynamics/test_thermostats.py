"""The engine thermostats against ASE's own classes: same numbers from the same random draws.

A ragged batch (4, 4 and 32 argon atoms, one target temperature and coupling
time per system) runs through our engine, whose noise source draws
from one numpy generator per system (``NumpyNoise``); ASE's class runs each system alone with
a generator of the same seed. Positions and velocities agree to 1e-10 after
100 steps of chaotic dynamics.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.andersen import Andersen as AseAndersen
from ase.md.bussi import Bussi as AseBussi
from ase.md.langevinbaoab import LangevinBAOAB as AseLangevinBAOAB
from ase.md.nose_hoover_chain import NoseHooverChainNVT as AseNoseHooverChainNVT
from ase.md.nvtberendsen import NVTBerendsen as AseNVTBerendsen
from ase.md.velocitydistribution import thermalize_momenta

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators.andersen import Andersen
from nvalchemi_ase.dynamics.integrators.berendsen import NVTBerendsen
from nvalchemi_ase.dynamics.integrators.bussi import Bussi
from nvalchemi_ase.dynamics.integrators.langevin_baoab import LangevinBAOAB
from nvalchemi_ase.dynamics.integrators.nose_hoover import NoseHooverChainNVT
from nvalchemi_ase.dynamics.noise import NumpyNoise
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk
from tests.tolerances import ASE_MD_ATOL, BATH_ENERGY_RTOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
DT = 2.0  # fs
STEPS = 100
TEMPERATURES = [60.0, 120.0, 200.0]  # K, one per system
TIMES = [20.0, 50.0, 100.0]  # fs: taut, tdamp or T_tau, one per system
SEEDS = [10, 11, 12]
ATOL = ASE_MD_ATOL


def _systems() -> list:
    systems = [argon_bulk(1, seed=0), argon_bulk(1, seed=1), argon_bulk(2, seed=2)]
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=80.0, rng=np.random.default_rng(100 + k))
    return systems


def _rngs() -> list[np.random.Generator]:
    return [np.random.default_rng(seed) for seed in SEEDS]


def _per_system(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _compare(batch: Batch, systems: list, run_ase) -> list:
    """Run ASE on a copy of each system; assert positions and velocities equal ours."""
    ptr = batch.ptr.tolist()
    references = []
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        dynamics = run_ase(reference, b)
        dynamics.run(STEPS)
        ours = slice(ptr[b], ptr[b + 1])
        np.testing.assert_allclose(batch.positions[ours].numpy(), reference.positions, rtol=0, atol=ATOL)
        np.testing.assert_allclose(
            batch.velocities[ours].numpy(), reference.get_velocities(), rtol=0, atol=ATOL
        )
        references.append(dynamics)
    return references


@pytest.mark.parametrize("fixcm", [True, False])
def test_andersen_equals_ase(fixcm):
    systems = _systems()
    probabilities = [0.05, 0.2, 0.01]
    batch = Batch.from_atoms(systems, device="cpu")
    engine = Andersen(
        LennardJones(**ARGON),
        dt=DT,
        temperature=_per_system(TEMPERATURES),
        andersen_prob=_per_system(probabilities),
        fixcm=fixcm,
        noise=NumpyNoise(_rngs()),
    )
    engine.run(batch, n_steps=STEPS)
    _compare(
        batch,
        systems,
        lambda atoms, b: AseAndersen(
            atoms,
            DT * units.fs,
            temperature_K=TEMPERATURES[b],
            andersen_prob=probabilities[b],
            fixcm=fixcm,
            rng=np.random.default_rng(SEEDS[b]),
        ),
    )


@pytest.mark.parametrize("fixcm", [True, False])
def test_berendsen_equals_ase(fixcm):
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NVTBerendsen(LennardJones(**ARGON), dt=DT, temperature=TEMPERATURES, taut=TIMES, fixcm=fixcm)
    engine.run(batch, n_steps=STEPS)
    _compare(
        batch,
        systems,
        lambda atoms, b: AseNVTBerendsen(
            atoms, DT * units.fs, temperature_K=TEMPERATURES[b], taut=TIMES[b] * units.fs, fixcm=fixcm
        ),
    )


def test_bussi_equals_ase():
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = Bussi(
        LennardJones(**ARGON), dt=DT, temperature=TEMPERATURES, taut=TIMES, noise=NumpyNoise(_rngs())
    )
    engine.run(batch, n_steps=STEPS)
    references = _compare(
        batch,
        systems,
        lambda atoms, b: AseBussi(
            atoms,
            DT * units.fs,
            temperature_K=TEMPERATURES[b],
            taut=TIMES[b] * units.fs,
            rng=np.random.default_rng(SEEDS[b]),
        ),
    )
    transferred = [dynamics.transferred_energy for dynamics in references]
    np.testing.assert_allclose(
        batch.bussi_transferred_energy.numpy(), transferred, rtol=BATH_ENERGY_RTOL, atol=1e-12
    )


@pytest.mark.parametrize(("tchain", "tloop"), [(3, 1), (1, 1), (4, 2)])
def test_nose_hoover_chain_equals_ase(tchain, tloop):
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = NoseHooverChainNVT(
        LennardJones(**ARGON), dt=DT, temperature=TEMPERATURES, tdamp=TIMES, tchain=tchain, tloop=tloop
    )
    engine.run(batch, n_steps=STEPS)
    references = _compare(
        batch,
        systems,
        lambda atoms, b: AseNoseHooverChainNVT(
            atoms,
            DT * units.fs,
            temperature_K=TEMPERATURES[b],
            tdamp=TIMES[b] * units.fs,
            tchain=tchain,
            tloop=tloop,
        ),
    )
    np.testing.assert_allclose(
        engine.thermostat_energy(batch).numpy(),
        [dynamics._thermostat.get_thermostat_energy() for dynamics in references],
        rtol=BATH_ENERGY_RTOL,
        atol=1e-12,
    )
    np.testing.assert_allclose(
        batch.nhc_p_eta.numpy(),
        np.stack([d._thermostat._p_eta for d in references]),
        rtol=BATH_ENERGY_RTOL,
        atol=1e-12,
    )


def test_langevin_baoab_equals_ase():
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = LangevinBAOAB(
        LennardJones(**ARGON), dt=DT, temperature=TEMPERATURES, T_tau=TIMES, noise=NumpyNoise(_rngs())
    )
    engine.run(batch, n_steps=STEPS)
    _compare(
        batch,
        systems,
        lambda atoms, b: AseLangevinBAOAB(
            atoms,
            DT * units.fs,
            temperature_K=TEMPERATURES[b],
            T_tau=TIMES[b] * units.fs,
            rng=np.random.default_rng(SEEDS[b]),
        ),
    )
