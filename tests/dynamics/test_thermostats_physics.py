"""The engine thermostats reach their targets: mean temperatures, relaxation, conserved quantities.

Stochastic thermostats: the time average of each system's kinetic temperature,
averaged over many independent argon systems, is the target within four
standard errors (two targets per batch, to check per-system parameters).
Berendsen: the exact relaxation law of its rescaling on a force-free gas.
Nosé–Hoover chains: the time-averaged temperature, and the conserved energy.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.units import kB

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators.andersen import Andersen
from nvalchemi_ase.dynamics.integrators.berendsen import NVTBerendsen
from nvalchemi_ase.dynamics.integrators.bussi import Bussi
from nvalchemi_ase.dynamics.integrators.langevin_baoab import LangevinBAOAB
from nvalchemi_ase.dynamics.integrators.nose_hoover import NoseHooverChainNVT
from nvalchemi_ase.hooks import NeighborListHook
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.thermo import kinetic_energy, temperature
from nvalchemi_ase.ops.velocities import remove_drift
from tests.structures import argon_bulk
from tests.tolerances import CONSERVED_ENERGY_ATOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
COLD, HOT = 50.0, 120.0  # K: the first half of each batch is held at COLD, the second at HOT


def _argon_batch(count: int, repeat: int = 1) -> Batch:
    return Batch.from_atoms([argon_bulk(repeat, seed=k, rattle=0.05) for k in range(count)], device="cpu")


def _targets(count: int) -> torch.Tensor:
    return torch.tensor([COLD] * (count // 2) + [HOT] * (count // 2), dtype=torch.float64)


def _start_hot(batch: Batch, targets: torch.Tensor, seed: int) -> None:
    """Velocities at twice the target (equipartition sends half into the potential energy)."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch.velocities.shape, generator=generator, dtype=batch.dtype)
    batch.velocities = noise * torch.sqrt(2.0 * kB * targets[batch.batch_idx] / batch.masses).unsqueeze(1)


def _sampled_temperatures(engine, batch: Batch, dof: torch.Tensor, samples: int, every: int) -> torch.Tensor:
    """``[samples, B]`` kinetic temperatures, K, taken every ``every`` steps."""
    values = []
    for _ in range(samples):
        engine.run(batch, n_steps=every)
        kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        values.append(temperature(kinetic, dof))
    return torch.stack(values)


class BussiWithoutTranslation(Bussi):
    """Bussi on N_f = 3N − 3: the total momentum is zero and stays so (no force or rescaling makes it)."""

    def degrees_of_freedom(self, batch):
        return super().degrees_of_freedom(batch) - 3.0


STEP = 10.0  # fs; argon's vibrations take about 100 steps, the thermostats couple within a few


def _andersen(targets, hooks, fixcm):
    return Andersen(LennardJones(**ARGON), STEP, targets, 0.2, fixcm=fixcm, seed=1, hooks=hooks)


STOCHASTIC = {
    # name: (engine factory, degrees of freedom removed from 3N in the measured temperature)
    "andersen": (lambda targets, hooks: _andersen(targets, hooks, fixcm=False), 0),
    "andersen-fixcm": (lambda targets, hooks: _andersen(targets, hooks, fixcm=True), 3),
    "bussi": (
        lambda targets, hooks: BussiWithoutTranslation(
            LennardJones(**ARGON), STEP, targets, taut=25.0, seed=2, hooks=hooks
        ),
        3,
    ),
    "baoab": (
        lambda targets, hooks: LangevinBAOAB(
            LennardJones(**ARGON), STEP, targets, T_tau=25.0, seed=3, hooks=hooks
        ),
        0,
    ),
}


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_mean_temperature_over_many_systems(name):
    factory, removed = STOCHASTIC[name]
    count = 32
    batch, targets = _argon_batch(count), _targets(count)
    _start_hot(batch, targets, seed=7)
    if removed:  # these keep the total momentum at zero: start there
        batch.velocities = remove_drift(batch.velocities, batch.masses, batch.batch_idx, count)
    engine = factory(targets, [NeighborListHook(8.5, skin=1.0)])
    engine.run(batch, n_steps=60)  # equilibrate
    dof = torch.as_tensor(3.0 * batch.counts - removed, dtype=torch.float64)
    ratio = _sampled_temperatures(engine, batch, dof, samples=40, every=3).mean(dim=0) / targets
    standard_error = ratio.std().item() / math.sqrt(count)
    assert abs(ratio.mean().item() - 1.0) < 4 * standard_error, (ratio.mean().item(), standard_error)
    assert standard_error < 0.025  # the test has power: a 10% error would fail
    for half in (ratio[: count // 2], ratio[count // 2 :]):  # each system follows its own target
        assert half.mean().item() == pytest.approx(1.0, abs=0.12)


def _free_gas(count_per_system: list[int]) -> Batch:
    """Argon atoms 12 Å apart, no cell: farther than the cutoff, so every force is exactly zero."""
    systems = [Atoms(f"Ar{n}", positions=[[12.0 * k, 0.0, 0.0] for k in range(n)]) for n in count_per_system]
    return Batch.from_atoms(systems, device="cpu")


def test_berendsen_relaxes_by_its_law_with_clamps():
    """Without forces T_{n+1} = λ² T_n with λ = clamp(√(1 + (T₀/T_n − 1) dt/τ), 0.9, 1.1), exactly."""
    batch = _free_gas([3, 2, 4])
    generator = torch.Generator().manual_seed(0)
    batch.velocities = 0.01 * torch.randn(batch.velocities.shape, generator=generator, dtype=batch.dtype)
    targets, tauts, dt = [100.0, 30.0, 500.0], [20.0, 40.0, 10.0], 2.0
    engine = NVTBerendsen(LennardJones(**ARGON), dt=dt, temperature=targets, taut=tauts, fixcm=False)
    dof = torch.as_tensor(3.0 * batch.counts, dtype=torch.float64)
    kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
    expected = temperature(kinetic, dof).numpy()
    clamps = 0
    for _ in range(150):
        engine.run(batch, n_steps=1)
        scale = np.sqrt(1.0 + (np.array(targets) / expected - 1.0) * dt / np.array(tauts))
        clamps += int(((scale < 0.9) | (scale > 1.1)).sum())
        expected = expected * np.clip(scale, 0.9, 1.1) ** 2
        kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        np.testing.assert_allclose(temperature(kinetic, dof).numpy(), expected, rtol=1e-10)
    assert clamps > 0  # the clamps were exercised
    np.testing.assert_allclose(expected, targets, rtol=1e-3)  # and the target reached


def test_berendsen_holds_a_cold_system_and_uses_new_targets():
    batch = _free_gas([2, 2])
    batch.velocities = torch.zeros_like(batch.velocities)
    batch.velocities[0, 0] = 0.01
    engine = NVTBerendsen(LennardJones(**ARGON), dt=1.0, temperature=100.0, taut=1.0)
    engine.run(batch, n_steps=0)
    assert engine.scale_velocities(batch).tolist() == pytest.approx([1.1, 1.1])  # 0 K: no NaN, stays 0
    assert (batch.velocities[2:] == 0).all()
    engine.temperature = [1.0, 1.0]  # as ASE's set_temperature, mid-run
    assert engine.scale_velocities(batch).tolist() == pytest.approx([0.9, 1.1])


def test_nose_hoover_time_average_reaches_the_target():
    count = 16
    batch, targets = _argon_batch(count), _targets(count)
    engine = NoseHooverChainNVT(
        LennardJones(**ARGON),
        dt=5.0,
        temperature=targets,
        tdamp=50.0,
        hooks=[NeighborListHook(8.5, skin=1.0)],
        initial_temperature=20.0,
        velocity_seed=3,
    )
    engine.run(batch, n_steps=60)
    dof = torch.as_tensor(3.0 * batch.counts, dtype=torch.float64)  # the chain drives 3N
    ratio = _sampled_temperatures(engine, batch, dof, samples=25, every=4).mean(dim=0) / targets
    for half in (ratio[: count // 2], ratio[count // 2 :]):
        assert half.mean().item() == pytest.approx(1.0, abs=0.08)


@pytest.mark.parametrize("thermostat", ["nose-hoover", "bussi"])
def test_conserved_energy(thermostat):
    """E_pot + E_kin + the chain energy (Nosé–Hoover), or minus the energy put in (Bussi), is conserved."""
    batch = Batch.from_atoms(
        [argon_bulk(1, seed=0), argon_bulk(2, seed=1), argon_bulk(1, seed=2)], device="cpu"
    )
    model = LennardJones(**ARGON)
    options = {"initial_temperature": 50.0, "velocity_seed": 1}
    if thermostat == "nose-hoover":
        engine = NoseHooverChainNVT(model, dt=1.0, temperature=[200.0, 250.0, 300.0], tdamp=20.0, **options)
    else:
        engine = Bussi(model, dt=1.0, temperature=[200.0, 250.0, 300.0], taut=20.0, seed=0, **options)

    def conserved_and_bath():
        kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        if thermostat == "nose-hoover":
            bath = engine.thermostat_energy(batch)
        else:
            bath = -batch.bussi_transferred_energy
        return batch.energy[:, 0] + kinetic + bath, bath

    engine.run(batch, n_steps=0)
    before, _ = conserved_and_bath()
    engine.run(batch, n_steps=100)
    after, bath = conserved_and_bath()
    assert (bath.abs() > 0.02).all()  # the bath exchanged real energy (eV) ...
    assert (
        after - before
    ).abs().max().item() < CONSERVED_ENERGY_ATOL  # ... and the sum held to the integrator's error


def test_nose_hoover_state_follows_its_systems():
    """Chains are batch fields: a re-formed batch (refill, reorder) continues each system exactly."""
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms([argon_bulk(1, seed=k) for k in range(3)], device="cpu")
    options = {
        "dt": 2.0,
        "temperature": 100.0,
        "tdamp": 30.0,
        "initial_temperature": 40.0,
        "velocity_seed": 0,
    }
    whole = NoseHooverChainNVT(model, **options)
    whole.run(batch, n_steps=20)
    picked = batch.index_select(np.array([2, 0]))
    picked.energy = picked.forces = None
    NoseHooverChainNVT(model, **{**options, "initial_temperature": None}).run(picked, n_steps=20)
    whole.run(batch, n_steps=20)
    for ours, theirs in ((0, 2), (1, 0)):
        mine = picked.index_select(np.array([ours]))
        reference = batch.index_select(np.array([theirs]))
        torch.testing.assert_close(mine.positions, reference.positions, rtol=0, atol=1e-12)
        torch.testing.assert_close(mine.nhc_p_eta, reference.nhc_p_eta, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda m: Andersen(m, 1.0, temperature=-1.0, andersen_prob=0.1), "temperature"),
        (lambda m: Andersen(m, 1.0, temperature=100.0, andersen_prob=1.5), "andersen_prob"),
        (lambda m: NVTBerendsen(m, 1.0, temperature=100.0, taut=0.0), "taut"),
        (lambda m: Bussi(m, 1.0, temperature=[100.0, float("nan")], taut=10.0), "temperature"),
        (lambda m: NoseHooverChainNVT(m, 1.0, temperature=100.0, tdamp=10.0, tchain=0), "tchain"),
        (lambda m: NoseHooverChainNVT(m, 1.0, temperature=100.0, tdamp=10.0, tloop=1.5), "tloop"),
        (lambda m: LangevinBAOAB(m, 1.0, temperature=100.0, T_tau=-5.0), "T_tau"),
    ],
)
def test_bad_parameters(build, match):
    with pytest.raises(ValueError, match=match):
        build(LennardJones(**ARGON))


def test_bad_parameter_type():
    with pytest.raises(TypeError, match="taut"):
        Bussi(LennardJones(**ARGON), 1.0, temperature=100.0, taut="fast")


def test_per_system_parameters_must_match_the_batch():
    batch = Batch.from_atoms([argon_bulk(1), argon_bulk(1)], device="cpu")
    engine = NVTBerendsen(LennardJones(**ARGON), dt=1.0, temperature=100.0, taut=[10.0, 20.0, 30.0])
    with pytest.raises(ValueError, match="taut has 3 values for 2 systems"):
        engine.run(batch, n_steps=1)


def test_a_new_time_step_takes_effect():
    """As ASE's ``set_timestep``: coefficients that depend on dt are recomputed at the next step."""
    batch = Batch.from_atoms([argon_bulk(1)], device="cpu")
    engine = LangevinBAOAB(LennardJones(**ARGON), dt=1.0, temperature=10.0, T_tau=50.0, seed=0)
    engine.run(batch, n_steps=1)
    engine.dt = 4.0
    engine.run(batch, n_steps=1)
    assert engine._decay.flatten()[0].item() == pytest.approx(math.exp(-4.0 / 50.0), rel=1e-12)


def test_baoab_default_relaxation_time_is_fifty_steps():
    assert LangevinBAOAB(LennardJones(**ARGON), dt=2.0, temperature=10.0).T_tau.item() == 100.0
