"""SevenNet by ``load("7net-0")``: sevenn's own calculator's numbers, per system, to float32 round-off."""

from __future__ import annotations

import numpy as np
import pytest

from nvalchemi_ase import Batch
from nvalchemi_ase.models import evaluate, load
from tests.models.pretrained_checks import assert_matches_own_calculator
from tests.structures import mlip_systems
from tests.tolerances import MLIP_ENERGY_PER_ATOM_ATOL

sevenn_calculator = pytest.importorskip(
    "sevenn.calculator", reason="sevenn is not installed (extra [sevenn])"
)


@pytest.fixture(scope="module")
def model():
    return load("7net-0")


def test_ragged_batch_matches_sevennet_calculator(model):
    reference = sevenn_calculator.SevenNetCalculator("7net-0", device="cpu")
    for ours, theirs in assert_matches_own_calculator(model, reference, mlip_systems()):
        np.testing.assert_allclose(ours["energies"], theirs["energies"], atol=MLIP_ENERGY_PER_ATOM_ATOL)


def test_float32_network_in_a_float64_batch_keeps_the_batch_dtype(model):
    batch = Batch.from_atoms(mlip_systems()[:2], device="cpu")
    outputs = evaluate(model, batch, ["energy", "forces", "stress"])
    assert all(value.dtype == batch.dtype for value in outputs.values())
    assert not any(value.requires_grad for value in outputs.values())
    assert next(model.parameters()).dtype.is_floating_point and model.dtype is not None


def test_elements_it_was_not_trained_on_are_named(model):
    from ase import Atoms

    batch = Batch.from_atoms([Atoms("Og2", positions=[[0, 0, 0], [2.5, 0, 0]])], device="cpu")
    with pytest.raises(ValueError, match=r"atomic numbers \[118\]"):
        evaluate(model, batch)
