"""BatchedCalculator: the same numbers as ASE's calculators, inside ASE's own optimizers and MD."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.io import read
from ase.io.trajectory import Trajectory
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from nvalchemi_ase import BatchedCalculator, LennardJones
from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import BatchedModel, ModelOutputError, evaluate
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FLOAT64_RTOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}


def _pair(atoms, smooth=True):
    ours, theirs = atoms.copy(), atoms.copy()
    ours.calc = BatchedCalculator(LennardJones(**ARGON, smooth=smooth), device="cpu")
    theirs.calc = AseLennardJones(**ARGON, smooth=smooth)
    return ours, theirs


def test_properties_equal_ases():
    ours, theirs = _pair(argon_bulk(2, seed=7), smooth=False)
    assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), rel=FLOAT64_RTOL)
    assert ours.get_potential_energy(force_consistent=True) == pytest.approx(
        theirs.get_potential_energy(), rel=FLOAT64_RTOL
    )
    np.testing.assert_allclose(ours.get_forces(), theirs.get_forces(), rtol=FLOAT64_RTOL, atol=1e-14)
    np.testing.assert_allclose(ours.get_stress(), theirs.get_stress(), rtol=FLOAT64_RTOL, atol=1e-16)
    np.testing.assert_allclose(
        ours.get_potential_energies(), theirs.get_potential_energies(), rtol=FLOAT64_RTOL
    )
    assert isinstance(ours.get_potential_energy(), float) and isinstance(ours.get_forces(), np.ndarray)


def test_stress_is_not_present_without_a_3d_cell():
    molecule_atoms = Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [1.9, 3.2, 0]])
    ours, theirs = _pair(molecule_atoms)
    with pytest.raises(PropertyNotImplementedError):
        theirs.get_stress()
    with pytest.raises(PropertyNotImplementedError):
        ours.get_stress()


def test_bfgs_follows_the_same_path_as_with_ases_calculator():
    ours, theirs = _pair(argon_bulk(2, seed=11, rattle=0.3))
    for atoms in (ours, theirs):
        BFGS(atoms, logfile=None).run(fmax=1e-4, steps=60)
    np.testing.assert_allclose(ours.positions, theirs.positions, rtol=0, atol=1e-9)
    assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), rel=1e-10)


def test_velocity_verlet_follows_the_same_trajectory(tmp_path):
    ours, theirs = _pair(argon_bulk(2, seed=12))
    rng = np.random.default_rng(0)
    momenta = rng.normal(scale=0.3, size=(len(ours), 3))
    for atoms in (ours, theirs):
        atoms.set_momenta(momenta)
    path = tmp_path / "md.traj"
    with VelocityVerlet(ours, 5 * units.fs, trajectory=str(path)) as md:
        md.run(100)
    VelocityVerlet(theirs, 5 * units.fs).run(100)
    np.testing.assert_allclose(ours.positions, theirs.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.get_momenta(), theirs.get_momenta(), rtol=0, atol=1e-10)
    frames = read(path, ":")
    assert len(frames) == 101
    assert frames[-1].get_potential_energy() == pytest.approx(ours.get_potential_energy(), rel=1e-14)


def test_todict_is_json_and_names_the_model(tmp_path):
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    described = json.loads(json.dumps(calc.todict()))
    assert described["model"] == "LennardJones"
    assert described["model_parameters"]["sigma"] == 3.4
    atoms = argon_bulk(1)
    atoms.calc = calc
    atoms.get_potential_energy()
    with Trajectory(tmp_path / "one.traj", "w") as trajectory:
        trajectory.write(atoms)
    assert read(tmp_path / "one.traj").calc.results["energy"] == atoms.get_potential_energy()


def test_calculate_batch_equals_one_at_a_time():
    systems = ragged_systems()
    calc = BatchedCalculator(LennardJones(**ARGON, smooth=True), device="cpu")
    together = calc.calculate_batch(systems, ("energy", "forces", "stress"))
    for atoms, result in zip(systems, together, strict=True):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON, smooth=True)
        assert result["energy"] == pytest.approx(reference.get_potential_energy(), rel=FLOAT64_RTOL)
        np.testing.assert_allclose(result["forces"], reference.get_forces(), rtol=FLOAT64_RTOL, atol=1e-14)
        assert ("stress" in result) == (atoms.cell.rank == 3)


def test_float32_calculator():
    atoms = argon_bulk(2, seed=13)
    atoms.calc = BatchedCalculator(LennardJones(**ARGON), device="cpu", dtype=torch.float32)
    reference = atoms.copy()
    reference.calc = AseLennardJones(**ARGON)
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-5)


class _EnergyOnly(BatchedModel):
    cutoff = 0.0
    implemented_properties = ("energy",)

    def forward(self, batch, properties=("energy", "forces")):
        return {"energy": torch.zeros(batch.num_graphs, 1, dtype=batch.dtype)}


class _WrongShape(BatchedModel):
    def forward(self, batch, properties=("energy", "forces")):
        return {
            "energy": torch.zeros(batch.num_graphs, dtype=batch.dtype),
            "forces": torch.zeros(batch.num_nodes, 3),
        }


class _OtherDevice(BatchedModel):
    propagates_nonfinite = True  # results on the meta device: nothing to poison

    def forward(self, batch, properties=("energy", "forces")):
        return {
            "energy": torch.zeros(batch.num_graphs, 1, dtype=batch.dtype),
            "forces": torch.zeros(batch.num_nodes, 3, dtype=batch.dtype, device="meta"),
        }


def test_a_model_without_forces_is_refused_by_name():
    batch = Batch.from_atoms(molecule("H2O"), device="cpu")
    with pytest.raises(ModelOutputError, match="_EnergyOnly did not return 'forces'"):
        evaluate(_EnergyOnly(), batch)
    with pytest.raises(ModelOutputError, match="'energy' of shape \\(1,\\), expected \\(1, 1\\)"):
        evaluate(_WrongShape(), batch)
    # what passes evaluate is stored in the batch unchecked: a result on another device is refused here
    with pytest.raises(ModelOutputError, match="_OtherDevice returned 'forces' on meta, the batch is on cpu"):
        evaluate(_OtherDevice(), batch)


def test_non_models_are_refused():
    with pytest.raises(TypeError, match="batched model"):
        BatchedCalculator(AseLennardJones())


@pytest.mark.gpu
def test_cuda_equals_cpu():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
    atoms.rattle(0.1, seed=3)
    gpu = BatchedCalculator(LennardJones(**ARGON), device="cuda").calculate_batch([atoms])[0]
    cpu = BatchedCalculator(LennardJones(**ARGON), device="cpu").calculate_batch([atoms])[0]
    np.testing.assert_allclose(gpu["forces"], cpu["forces"], rtol=1e-12, atol=1e-14)
