"""Per-system comparison of a batched model with an ASE calculator."""

from __future__ import annotations

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError
from ase.stress import voigt_6_to_full_3x3_stress

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import evaluate
from tests.tolerances import FLOAT64_ATOL, FLOAT64_RTOL


def assert_matches_ase(model, make_calculator, systems: list[Atoms], rtol: float = FLOAT64_RTOL) -> None:
    """Energy, per-atom energies, forces and stress of each system inside one ragged batch equal ASE's;
    energy and forces also when asked for alone (a model may skip work per-atom energies need)."""
    batch = Batch.from_atoms(systems, device="cpu")
    per_atom = ("energies",) if "energies" in model.implemented_properties else ()
    outputs = evaluate(model, batch, ("energy", "forces", "stress", *per_atom))
    alone = evaluate(model, batch, ("energy", "forces"))
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = make_calculator()
        energy = reference.get_potential_energy()
        scale = max(abs(energy), 1.0)
        forces = reference.get_forces()
        atol = rtol * max(np.abs(forces).max(), 1.0) + FLOAT64_ATOL
        for results in (outputs, alone):
            np.testing.assert_allclose(
                results["energy"][b, 0].item(),
                energy,
                rtol=rtol,
                atol=rtol * scale,
                err_msg=f"system {b}",
            )
            np.testing.assert_allclose(
                results["forces"][ptr[b] : ptr[b + 1]].numpy(),
                forces,
                rtol=rtol,
                atol=atol,
                err_msg=f"system {b}",
            )
        if "energies" in reference.calc.implemented_properties:
            np.testing.assert_allclose(
                outputs["energies"][ptr[b] : ptr[b + 1]].numpy(),
                reference.get_potential_energies(),
                rtol=rtol,
                atol=rtol * scale,
            )
        ours_stress = outputs["stress"][b].numpy()
        try:
            stress = voigt_6_to_full_3x3_stress(reference.get_stress(include_ideal_gas=False))
        except PropertyNotImplementedError:
            assert np.isnan(ours_stress).all(), f"system {b}: ASE has no stress here, ours must be NaN"
            continue
        np.testing.assert_allclose(
            ours_stress,
            stress,
            rtol=rtol,
            atol=rtol * max(np.abs(stress).max(), 1e-8),
            err_msg=f"system {b}",
        )


def finite_difference_forces(model, atoms: Atoms, step: float = 1e-5) -> np.ndarray:
    """Central differences of the model's energy."""
    forces = np.zeros((len(atoms), 3))
    for a in range(len(atoms)):
        for d in range(3):
            energies = []
            for sign in (1.0, -1.0):
                moved = atoms.copy()
                moved.positions[a, d] += sign * step
                energies.append(energy_of(model, moved))
            forces[a, d] = -(energies[0] - energies[1]) / (2 * step)
    return forces


def finite_difference_stress(model, atoms: Atoms, step: float = 1e-6) -> np.ndarray:
    """σ = (1/V) ∂E/∂ε by central differences of a symmetric strain."""
    stress = np.zeros((3, 3))
    volume = atoms.get_volume()
    for a in range(3):
        for b in range(3):
            energies = []
            for sign in (1.0, -1.0):
                strain = np.eye(3)
                strain[a, b] += 0.5 * sign * step
                strain[b, a] += 0.5 * sign * step
                strained = atoms.copy()
                strained.set_cell(atoms.cell.array @ strain, scale_atoms=True)
                energies.append(energy_of(model, strained))
            stress[a, b] = (energies[0] - energies[1]) / (2 * step) / volume
    return stress


def energy_of(model, atoms: Atoms) -> float:
    batch = Batch.from_atoms(atoms, device="cpu")
    return float(evaluate(model, batch)["energy"][0, 0])


def model_forces(model, atoms: Atoms, dtype: torch.dtype = torch.float64) -> np.ndarray:
    batch = Batch.from_atoms(atoms, device="cpu", dtype=dtype)
    return evaluate(model, batch)["forces"].double().numpy()


__all__ = [
    "Calculator",
    "assert_matches_ase",
    "energy_of",
    "finite_difference_forces",
    "finite_difference_stress",
    "model_forces",
]
