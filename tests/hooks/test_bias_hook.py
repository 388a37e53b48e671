"""BiasedPotentialHook: the bias adds to energy and forces exactly, and NVE follows LJ + bias as ASE does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.verlet import VelocityVerlet

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, DemoDynamics
from nvalchemi_ase.dynamics.base import DynamicsStage
from nvalchemi_ase.hooks.bias import BiasedPotentialHook
from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.models import LennardJones, evaluate
from nvalchemi_ase.ops import segment_sum
from tests.cuda import no_syncs
from tests.structures import argon_bulk
from tests.tolerances import FLOAT64_ATOL, FLOAT64_RTOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
TRAJECTORY_ATOL = 1e-10  # Å, against ASE's VelocityVerlet
K_RESTRAINT = 0.05  # eV/Å²
CENTER = np.array([0.4, -0.3, 0.2])  # Å, where the restraint pulls each system's centre


def harmonic_restraint(batch):
    """The spec's example: restrain the centre of all atoms to the origin (one-system batches)."""
    k = 10.0
    com = batch.positions.mean(dim=0, keepdim=True)
    bias_energy = 0.5 * k * (com**2).sum().unsqueeze(0).unsqueeze(0)
    bias_forces = -k * com.expand_as(batch.positions) / batch.num_nodes
    return bias_energy, bias_forces


def centre_restraint(batch):
    """Per system: E = k/2 |c - c0|², c the mean position; F_i = -k (c - c0) / n."""
    counts = torch.as_tensor(batch.counts, dtype=batch.dtype, device=batch.device).unsqueeze(1)
    centres = segment_sum(batch.positions, batch.batch_idx, batch.num_graphs) / counts
    offset = centres - torch.as_tensor(CENTER, dtype=batch.dtype, device=batch.device)
    energy = 0.5 * K_RESTRAINT * offset.square().sum(dim=1, keepdim=True)
    forces = -K_RESTRAINT * (offset / counts)[batch.batch_idx]
    return energy, forces


class LennardJonesPlusRestraint(Calculator):
    """ASE's LennardJones plus ``centre_restraint``, written in numpy: the reference."""

    implemented_properties = ("energy", "forces")

    def __init__(self) -> None:
        super().__init__()
        self.lj = AseLennardJones(**ARGON)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.lj.calculate(self.atoms, ["energy", "forces"], all_changes)
        offset = self.atoms.positions.mean(axis=0) - CENTER
        n = len(self.atoms)
        self.results = {
            "energy": self.lj.results["energy"] + 0.5 * K_RESTRAINT * float(offset @ offset),
            "forces": self.lj.results["forces"] - K_RESTRAINT * offset / n,
        }


def _fire(hook: BiasedPotentialHook, batch: Batch) -> None:
    stage = DynamicsStage.AFTER_COMPUTE
    hook(HookContext(batch=batch, dynamics=None, step_count=0, stage=stage), stage)


def _computed(atoms_list) -> tuple[Batch, dict[str, torch.Tensor]]:
    batch = Batch.from_atoms(atoms_list, device="cpu")
    outputs = evaluate(LennardJones(**ARGON), batch)
    batch.energy, batch.forces = outputs["energy"].clone(), outputs["forces"].clone()
    return batch, outputs


def test_defaults_to_after_compute_and_is_a_hook():
    hook = BiasedPotentialHook(bias_fn=harmonic_restraint)
    assert isinstance(hook, Hook)
    assert hook.stage == DynamicsStage.AFTER_COMPUTE and hook.frequency == 1
    explicit = BiasedPotentialHook(harmonic_restraint, stage=DynamicsStage.BEFORE_POST_UPDATE, frequency=2)
    assert explicit.stage == DynamicsStage.BEFORE_POST_UPDATE and explicit.frequency == 2


def test_the_specs_restraint_adds_the_hand_computed_offsets():
    atoms = argon_bulk(2, seed=1)
    atoms.positions += [0.7, -1.1, 0.4]  # a centre away from the origin
    batch, outputs = _computed([atoms])
    _fire(BiasedPotentialHook(bias_fn=harmonic_restraint), batch)
    com = atoms.positions.mean(axis=0)
    energy_offset = 0.5 * 10.0 * float(com @ com)
    force_offset = -10.0 * com / len(atoms)
    expected_energy = outputs["energy"].numpy() + energy_offset
    expected_forces = outputs["forces"].numpy() + force_offset
    np.testing.assert_allclose(batch.energy.numpy(), expected_energy, rtol=FLOAT64_RTOL, atol=0)
    np.testing.assert_allclose(batch.forces.numpy(), expected_forces, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


def test_the_specs_example_runs_and_its_energy_is_lj_plus_bias():
    model = LennardJones(**ARGON)
    hook = BiasedPotentialHook(bias_fn=harmonic_restraint, stage=DynamicsStage.AFTER_COMPUTE)
    dynamics = DemoDynamics(model=model, dt=0.5, hooks=[hook])
    atoms = argon_bulk(2, seed=2)
    atoms.positions += [0.5, 0.5, -0.5]
    batch = Batch.from_atoms(atoms, device="cpu")
    dynamics.run(batch, n_steps=5)
    com = batch.positions.mean(dim=0)
    lj = evaluate(LennardJones(**ARGON), batch)
    torch.testing.assert_close(batch.energy, lj["energy"] + 5.0 * com.square().sum(), rtol=1e-12, atol=0)
    torch.testing.assert_close(batch.forces, lj["forces"] - 10.0 * com / batch.num_nodes, rtol=0, atol=1e-12)


def test_a_restrained_dimer_follows_ases_verlet_on_lj_plus_the_restraint():
    rng = np.random.default_rng(3)
    dimers = [
        Atoms("Ar2", positions=[[0.0, 0.0, 0.0], [3.9, 0.3, -0.2]]),
        Atoms("Ar2", positions=[[1.0, 2.0, -1.0], [1.2, 5.6, -0.9]]),
    ]
    for atoms in dimers:
        atoms.set_velocities(rng.normal(scale=0.01, size=(2, 3)))
    batch = Batch.from_atoms(dimers, device="cpu")
    engine = NVE(LennardJones(**ARGON), dt=5.0, hooks=[BiasedPotentialHook(centre_restraint)])
    engine.run(batch, n_steps=0)  # forces (with the bias) before the first step
    references = []
    for atoms in dimers:
        reference = atoms.copy()
        reference.calc = LennardJonesPlusRestraint()
        references.append((reference, VelocityVerlet(reference, 5.0 * units.fs)))
    for _ in range(20):
        engine.run(batch, n_steps=10)
        for _, md in references:
            md.run(10)
        for b, (reference, _) in enumerate(references):
            np.testing.assert_allclose(
                batch.positions[2 * b : 2 * b + 2].numpy(), reference.positions, rtol=0, atol=TRAJECTORY_ATOL
            )
    moved = np.linalg.norm(references[0][0].positions.mean(axis=0) - dimers[0].positions.mean(axis=0))
    assert moved > 0.1  # the restraint acted: the centre moved towards CENTER by a visible amount
    for b, (reference, _) in enumerate(references):
        assert batch.energy[b, 0].item() == pytest.approx(reference.get_potential_energy(), rel=FLOAT64_RTOL)


def test_a_bias_of_the_wrong_shape_names_both_shapes():
    batch, _ = _computed([argon_bulk(2, seed=0), argon_bulk(2, seed=1)])
    with pytest.raises(ValueError, match=r"energy has shape \(1, 1\), expected \(2, 1\)"):
        _fire(BiasedPotentialHook(harmonic_restraint), batch)

    def short_forces(batch):
        return torch.zeros(2, 1, dtype=batch.dtype), torch.zeros(3, 3, dtype=batch.dtype)

    with pytest.raises(ValueError, match=r"forces has shape \(3, 3\), expected \(64, 3\)"):
        _fire(BiasedPotentialHook(short_forces), batch)


def test_firing_before_any_compute_is_refused():
    batch = Batch.from_atoms(argon_bulk(2), device="cpu")
    with pytest.raises(ValueError, match="AFTER_COMPUTE"):
        _fire(BiasedPotentialHook(harmonic_restraint), batch)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"bias_fn": 3.0}, TypeError, "bias_fn"),
        ({"bias_fn": harmonic_restraint, "frequency": 0}, ValueError, "frequency"),
        ({"bias_fn": harmonic_restraint, "frequency": 1.5}, ValueError, "frequency"),
    ],
)
def test_bad_settings_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        BiasedPotentialHook(**kwargs)


@pytest.mark.gpu
def test_the_bias_on_cuda_adds_without_host_syncs():
    cpu, _ = _computed([argon_bulk(2, seed=5)])
    cuda = cpu.to("cuda")
    hook = BiasedPotentialHook(harmonic_restraint)
    _fire(hook, cpu)
    with no_syncs():
        _fire(hook, cuda)
    torch.testing.assert_close(cuda.energy.cpu(), cpu.energy, rtol=1e-12, atol=0)
    torch.testing.assert_close(cuda.forces.cpu(), cpu.forces, rtol=0, atol=FLOAT64_ATOL)
