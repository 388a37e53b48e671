"""Any ASE calculator as a batched model: the same numbers as the calculator itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.calculators.emt import EMT

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import ASECalculatorModel, evaluate


def _systems():
    cu = bulk("Cu", "fcc", a=3.6).repeat((2, 2, 2))
    cu.rattle(0.05, seed=1)
    alloy = bulk("Au", "fcc", a=4.0, cubic=True)
    alloy[1].symbol = "Ag"
    alloy.rattle(0.05, seed=2)
    cluster = Atoms("Pt3", positions=[[0, 0, 0], [2.7, 0, 0], [1.3, 2.2, 0.1]])
    return [cu, alloy, cluster]


@pytest.mark.parametrize("source", ["instance", "factory"])
def test_adapter_equals_the_calculator(source):
    systems = _systems()
    model = ASECalculatorModel(EMT() if source == "instance" else EMT)
    batch = Batch.from_atoms(systems, device="cpu")
    outputs = evaluate(model, batch, ("energy", "forces", "stress", "energies"))
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = EMT()
        assert outputs["energy"][b, 0].item() == reference.get_potential_energy()
        np.testing.assert_array_equal(outputs["forces"][ptr[b] : ptr[b + 1]].numpy(), reference.get_forces())
        np.testing.assert_array_equal(
            outputs["energies"][ptr[b] : ptr[b + 1]].numpy(), reference.get_potential_energies()
        )
    np.testing.assert_allclose(
        outputs["stress"][0].numpy().ravel()[[0, 4, 8]],
        reference_stress(systems[0])[:3],
        rtol=1e-14,
    )
    assert np.isnan(outputs["stress"][2].numpy()).all()  # a cluster has no stress in EMT


def test_per_atom_energies_are_asked_for_only_when_wanted():
    """Some calculators compute per-atom energies in a second run (CHGNet's does): not unless asked."""
    asked = []

    class Recording(EMT):
        def get_potential_energies(self, atoms=None):
            asked.append(True)
            return super().get_potential_energies(atoms)

    outputs = evaluate(ASECalculatorModel(Recording), Batch.from_atoms(_systems(), device="cpu"))
    assert "energies" not in outputs and not asked


def reference_stress(atoms):
    reference = atoms.copy()
    reference.calc = EMT()
    return reference.get_stress()


def test_adapter_follows_moving_positions():
    systems = _systems()
    model = ASECalculatorModel(EMT)
    batch = Batch.from_atoms(systems, device="cpu")
    before = evaluate(model, batch)["energy"][1, 0].item()
    batch.positions = (
        batch.positions
        + 0.05 * torch.arange(batch.num_nodes, dtype=torch.float64).unsqueeze(1) / batch.num_nodes
    )
    moved = batch.to_atoms()[1]
    moved.calc = EMT()
    outputs = evaluate(model, batch)
    # EMT updates its cached neighbour list rather than rebuilding it: same pairs, other summation order
    assert outputs["energy"][1, 0].item() == pytest.approx(moved.get_potential_energy(), rel=1e-12)
    assert outputs["energy"][1, 0].item() != pytest.approx(before, rel=1e-6)


def test_adapter_rejects_non_calculators():
    with pytest.raises(TypeError, match="ASE calculator"):
        ASECalculatorModel(molecule("H2O"))
