"""Atoms ⇄ Batch: the round trip keeps everything ASE holds; bad input is refused before anything changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms, FixBondLength, FixCartesian, Hookean
from ase.md.velocitydistribution import thermalize_momenta

from nvalchemi_ase.data import AtomCategory, Batch, BatchValidationError
from tests.structures import ragged_systems


def _decorated_systems():
    systems = ragged_systems()
    rng = np.random.default_rng(3)
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=300 + 50 * k, rng=rng)
        atoms.set_tags(rng.integers(0, 4, len(atoms)))
        atoms.info.update({"name": f"system-{k}", "k": k, "vector": np.arange(3) * k})
    systems[0].set_masses(rng.uniform(10.0, 50.0, len(systems[0])))  # explicit, non-default masses
    systems[0].set_constraint([FixBondLength(0, 1), FixAtoms(indices=[2, 5, 7])])
    systems[1].set_constraint(FixCartesian(1, mask=[True, False, True]))
    systems[3].set_constraint([FixAtoms(mask=systems[3].positions[:, 2] < 8.0), Hookean(0, 1, 10.0, rt=4.0)])
    systems[2].set_initial_magnetic_moments(np.linspace(0.0, 1.0, len(systems[2])))
    return systems


def test_round_trip_is_lossless():
    systems = _decorated_systems()
    back = Batch.from_atoms(systems, device="cpu").to_atoms()
    for original, returned in zip(systems, back, strict=True):
        np.testing.assert_array_equal(returned.numbers, original.numbers)
        np.testing.assert_array_equal(returned.positions, original.positions)
        np.testing.assert_array_equal(returned.get_velocities(), original.get_velocities())
        np.testing.assert_allclose(returned.get_momenta(), original.get_momenta(), rtol=1e-15, atol=0)
        np.testing.assert_array_equal(returned.get_masses(), original.get_masses())
        np.testing.assert_array_equal(returned.cell.array, original.cell.array)
        np.testing.assert_array_equal(returned.pbc, original.pbc)
        np.testing.assert_array_equal(returned.get_tags(), original.get_tags())
        assert returned.info.keys() == original.info.keys()
        np.testing.assert_array_equal(returned.info["vector"], original.info["vector"])
        assert ("masses" in returned.arrays) == ("masses" in original.arrays)
        assert [type(c) for c in returned.constraints] == [type(c) for c in original.constraints]
        assert [c.todict() for c in returned.constraints] == [c.todict() for c in original.constraints]
    np.testing.assert_array_equal(
        back[2].get_initial_magnetic_moments(), systems[2].get_initial_magnetic_moments()
    )


def test_fixatoms_becomes_the_frozen_category_and_comes_back_in_place():
    systems = _decorated_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    frozen = batch.atom_categories[batch.batch_idx == 0] == AtomCategory.FROZEN
    assert np.flatnonzero(frozen.numpy()).tolist() == [2, 5, 7]
    slab_frozen = (batch.atom_categories[batch.batch_idx == 3] == AtomCategory.FROZEN).numpy()
    np.testing.assert_array_equal(slab_frozen, systems[3].positions[:, 2] < 8.0)
    back = batch.to_atoms()
    assert isinstance(back[0].constraints[1], FixAtoms)  # after FixBondLength, as given
    assert back[0].constraints[1].get_indices().tolist() == [2, 5, 7]
    assert isinstance(back[3].constraints[0], FixAtoms)


def test_constraints_are_copies_not_shared():
    systems = _decorated_systems()
    back = Batch.from_atoms(systems, device="cpu").to_atoms()
    assert back[0].constraints[0] is not systems[0].constraints[0]


def test_calculator_results_round_trip():
    systems = [bulk("Ar", "fcc", a=5.26, cubic=True), molecule("H2O")]
    systems[0].calc = AseLennardJones(sigma=3.4, epsilon=0.0104, rc=8.0)
    systems[0].get_stress()
    systems[1].calc = SinglePointCalculator(systems[1], energy=-1.5, forces=np.ones((3, 3)))
    batch = Batch.from_atoms(systems, device="cpu")
    assert batch.energy.shape == (2, 1) and batch.forces.shape == (7, 3) and batch.stress.shape == (2, 3, 3)
    assert torch.isnan(batch.stress[1]).all()  # the molecule had no stress
    back = batch.to_atoms()
    assert back[0].get_potential_energy() == systems[0].get_potential_energy()
    np.testing.assert_array_equal(back[0].get_forces(), systems[0].get_forces())
    np.testing.assert_allclose(back[0].get_stress(), systems[0].get_stress(), rtol=1e-15, atol=1e-20)
    assert back[1].get_potential_energy() == -1.5
    assert "stress" not in back[1].calc.results


def test_stale_calculator_results_are_not_taken():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.calc = AseLennardJones(sigma=3.4, epsilon=0.0104, rc=8.0)
    atoms.get_potential_energy()
    atoms.positions[0] += 0.1  # results no longer describe these positions
    assert Batch.from_atoms(atoms, device="cpu").energy is None


def test_molecules_triclinic_cells_and_mixed_sizes_together():
    big = bulk("Cu", "fcc", a=3.6).repeat((12, 12, 12))  # 1728 atoms, triclinic primitive cell
    systems = [Atoms("He"), molecule("CH4"), big]
    batch = Batch.from_atoms(systems, device="cpu")
    assert batch.counts.tolist() == [1, 5, 1728]
    back = batch.to_atoms()
    np.testing.assert_array_equal(back[2].cell.array, big.cell.array)
    assert back[0].cell.rank == 0 and not back[0].pbc.any()


def test_float32_batches_round_trip_within_single_precision():
    atoms = ragged_systems()[1]
    back = Batch.from_atoms(atoms, device="cpu", dtype=torch.float32).to_atoms()[0]
    np.testing.assert_allclose(back.positions, atoms.positions, rtol=1e-6)


# ---------------------------------------------------------------- errors


def test_empty_list_is_refused():
    with pytest.raises(BatchValidationError, match="empty list"):
        Batch.from_atoms([])


def test_non_atoms_is_refused_naming_the_system():
    with pytest.raises(BatchValidationError, match=r"system 1: expected ase\.Atoms"):
        Batch.from_atoms([Atoms("H"), "H2O"])


def test_empty_system_is_refused():
    with pytest.raises(BatchValidationError, match="system 1, field 'positions': the system has no atoms"):
        Batch.from_atoms([Atoms("H"), Atoms()])


def test_non_finite_positions_name_system_and_field():
    bad = molecule("H2O")
    bad.positions[1, 2] = np.nan
    with pytest.raises(BatchValidationError, match=r"system 2, field 'positions'.*atom 1"):
        Batch.from_atoms([Atoms("H"), Atoms("He"), bad])


def test_non_finite_momenta_are_refused():
    bad = molecule("H2O")
    bad.set_momenta(np.full((3, 3), np.inf))
    with pytest.raises(BatchValidationError, match="system 0, field 'momenta'"):
        Batch.from_atoms(bad)


@pytest.mark.parametrize("mass", [0.0, -1.0, np.nan])
def test_non_positive_masses_are_refused(mass):
    bad = molecule("H2O")
    masses = bad.get_masses()
    masses[2] = mass
    bad.set_masses(masses)
    with pytest.raises(BatchValidationError, match=r"system 1, field 'masses'.*atom 2"):
        Batch.from_atoms([Atoms("H"), bad])


@pytest.mark.parametrize(
    ("cell", "pbc"),
    [
        (np.zeros((3, 3)), [True, True, True]),
        ([[3.0, 0, 0], [6.0, 0, 0], [0, 0, 3.0]], [True, True, True]),  # two parallel vectors
        (
            [[3.0, 0, 0], [0, 0, 0], [0, 0, 3.0]],
            [True, True, False],
        ),  # periodic axis of zero length
    ],
)
def test_pbc_with_degenerate_cell_is_refused(cell, pbc):
    bad = Atoms("H", cell=cell, pbc=pbc)
    with pytest.raises(BatchValidationError, match=r"system 1, field 'cell'.*degenerate"):
        Batch.from_atoms([Atoms("H"), bad])


def test_non_periodic_axes_may_have_zero_vectors():
    wire = Atoms(
        "H2",
        positions=[[0, 0, 0], [0.0, 0.7, 0.0]],
        cell=[[2.0, 0, 0], [0, 0, 0], [0, 0, 0]],
        pbc=[1, 0, 0],
    )
    assert Batch.from_atoms(wire, device="cpu").num_nodes == 2


@pytest.mark.parametrize("dtype", [torch.int64, "float64", np.float64])
def test_bad_dtype_is_refused(dtype):
    with pytest.raises(BatchValidationError, match="dtype"):
        Batch.from_atoms(Atoms("H"), dtype=dtype)


def test_bad_device_is_refused():
    with pytest.raises(BatchValidationError, match="not a torch device"):
        Batch.from_atoms(Atoms("H"), device="gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(BatchValidationError, match="CUDA is not available"):
            Batch.from_atoms(Atoms("H"), device="cuda")


def test_validation_happens_before_any_change():
    good = molecule("H2O")
    before = good.positions.copy()
    with pytest.raises(BatchValidationError):
        Batch.from_atoms([good, Atoms("H", positions=[[np.inf, 0, 0]])])
    np.testing.assert_array_equal(good.positions, before)
