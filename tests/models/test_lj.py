"""Lennard-Jones equals ase.calculators.lj.LennardJones per system inside ragged batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import LennardJones, evaluate
from tests.models.compare import (
    assert_matches_ase,
    energy_of,
    finite_difference_forces,
    finite_difference_stress,
    model_forces,
)
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FINITE_DIFFERENCE_ATOL, FLOAT32_RTOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}


@pytest.mark.parametrize("smooth", [False, True])
def test_ragged_batch_matches_ase(smooth):
    assert_matches_ase(
        LennardJones(**ARGON, smooth=smooth),
        lambda: AseLennardJones(**ARGON, smooth=smooth),
        ragged_systems(),
    )


@pytest.mark.parametrize("smooth", [False, True])
def test_custom_onset_and_reduced_units_match_ase(smooth):
    systems = [argon_bulk(2, seed=4), *ragged_systems(seed=2)[1:3]]
    for atoms in systems:
        atoms.positions /= 3.4  # reduced units: σ = 1
        atoms.cell = atoms.cell.array / 3.4
    assert_matches_ase(
        LennardJones(rc=2.7, ro=2.0, smooth=smooth),
        lambda: AseLennardJones(rc=2.7, ro=2.0, smooth=smooth),
        systems,
    )


def test_defaults_are_ases():
    ours, theirs = LennardJones(), AseLennardJones()
    assert (ours.sigma, ours.epsilon, ours.rc, ours.ro, ours.smooth) == (
        theirs.parameters.sigma,
        theirs.parameters.epsilon,
        theirs.parameters.rc,
        theirs.parameters.ro,
        theirs.parameters.smooth,
    )
    assert ours.cutoff == 3.0


@pytest.mark.parametrize("smooth", [False, True])
def test_dimer_at_the_minimum(smooth):
    dimer = Atoms("H2", positions=[[0, 0, 0], [0, 0, 2 ** (1.0 / 6.0)]])
    model = LennardJones(rc=1e5, smooth=smooth)
    assert energy_of(model, dimer) == pytest.approx(-1.0, abs=1e-12)
    np.testing.assert_allclose(model_forces(model, dimer), 0.0, atol=1e-10)


def test_ase_reference_force_on_displaced_bulk_atom():
    atoms = bulk("Ar", cubic=True)
    atoms.set_cell(atoms.cell * 1.5, scale_atoms=True)
    atoms.positions[0, 0] += 0.03
    assert model_forces(LennardJones(sigma=1.0, epsilon=1.0, rc=10.0), atoms)[0, 0] == pytest.approx(
        1.57190846e-05, rel=1e-8
    )


def test_smooth_forces_and_stress_are_derivatives_of_the_energy():
    atoms = argon_bulk(1, seed=2, rattle=0.2)
    model = LennardJones(**ARGON, smooth=True)
    np.testing.assert_allclose(
        model_forces(model, atoms),
        finite_difference_forces(model, atoms),
        atol=FINITE_DIFFERENCE_ATOL,
    )
    stress = evaluate(model, Batch.from_atoms(atoms, device="cpu"), ("energy", "forces", "stress"))["stress"][
        0
    ].numpy()
    np.testing.assert_allclose(stress, finite_difference_stress(model, atoms), atol=1e-8)


def test_system_alone_equals_itself_in_any_batch_order():
    systems = ragged_systems()
    model = LennardJones(**ARGON, smooth=True)
    forward = evaluate(model, Batch.from_atoms(systems, device="cpu"))
    reverse = evaluate(model, Batch.from_atoms(systems[::-1], device="cpu"))
    ptr = np.concatenate([[0], np.cumsum([len(a) for a in systems])])
    for b, atoms in enumerate(systems):
        alone = evaluate(model, Batch.from_atoms(atoms, device="cpu"))
        k = len(systems) - 1 - b
        torch.testing.assert_close(forward["energy"][b], alone["energy"][0], rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(reverse["energy"][k], alone["energy"][0], rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(
            forward["forces"][ptr[b] : ptr[b + 1]], alone["forces"], rtol=1e-13, atol=1e-15
        )


def test_float32_agrees_with_float64():
    atoms = argon_bulk(2, seed=1)
    model = LennardJones(**ARGON)
    f64 = model_forces(model, atoms)
    f32 = model_forces(LennardJones(**ARGON), atoms, dtype=torch.float32)
    np.testing.assert_allclose(f32, f64, rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL * np.abs(f64).max())


def test_reused_neighbour_list_gives_fresh_results():
    atoms = argon_bulk(2, seed=3)
    model = LennardJones(**ARGON, smooth=True, skin=1.0)
    rng = np.random.default_rng(0)
    for _ in range(5):
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON, smooth=True)
        np.testing.assert_allclose(model_forces(model, atoms), reference.get_forces(), rtol=1e-10, atol=1e-13)


def test_bad_parameters_are_refused():
    with pytest.raises(ValueError, match="sigma and rc"):
        LennardJones(sigma=-1.0)
    with pytest.raises(ValueError, match="ro < rc"):
        LennardJones(rc=2.0, ro=3.0, smooth=True)
