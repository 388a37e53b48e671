"""Morse equals ase.calculators.morse.MorsePotential per system inside ragged batches."""

from __future__ import annotations

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.morse import MorsePotential

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import Morse, evaluate
from tests.models.compare import (
    assert_matches_ase,
    energy_of,
    finite_difference_forces,
    finite_difference_stress,
    model_forces,
)
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FINITE_DIFFERENCE_ATOL

ARGON_LIKE = {"epsilon": 0.0104, "rho0": 6.0, "r0": 3.8}


def test_ragged_batch_matches_ase():
    assert_matches_ase(Morse(**ARGON_LIKE), lambda: MorsePotential(**ARGON_LIKE), ragged_systems())


def test_custom_cutoffs_match_ase():
    params = {"epsilon": 0.5, "rho0": 4.0, "r0": 3.0, "rcut1": 1.5, "rcut2": 3.2}
    assert_matches_ase(Morse(**params), lambda: MorsePotential(**params), ragged_systems(seed=5))


def test_defaults_are_ases():
    model = Morse()
    defaults = MorsePotential.default_parameters
    assert model.todict() == {key: defaults[key] for key in ("epsilon", "rho0", "r0", "rcut1", "rcut2")}
    assert model.cutoff == pytest.approx(2.7)


def test_dimer_at_the_minimum():
    dimer = Atoms("H2", positions=[[0, 0, 0], [0, 0, 3.8]])
    model = Morse(**ARGON_LIKE)
    assert energy_of(model, dimer) == pytest.approx(-0.0104, abs=1e-14)
    np.testing.assert_allclose(model_forces(model, dimer), 0.0, atol=1e-14)


def test_forces_and_stress_are_derivatives_of_the_energy():
    atoms = argon_bulk(1, seed=6, rattle=0.25)
    model = Morse(**ARGON_LIKE)
    np.testing.assert_allclose(
        model_forces(model, atoms),
        finite_difference_forces(model, atoms),
        atol=FINITE_DIFFERENCE_ATOL,
    )
    stress = evaluate(model, Batch.from_atoms(atoms, device="cpu"), ("energy", "forces", "stress"))["stress"][
        0
    ].numpy()
    np.testing.assert_allclose(stress, finite_difference_stress(model, atoms), atol=1e-8)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="rcut2 > rcut1"):
        Morse(rcut1=2.0, rcut2=1.0)
