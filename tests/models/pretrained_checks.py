"""One check for every pretrained adapter: our batch against the package's own calculator, per system."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models.base import Model
from tests.tolerances import MLIP_ENERGY_PER_ATOM_ATOL, MLIP_FORCES_ATOL, MLIP_STRESS_ATOL


def assert_matches_own_calculator(
    model: Model,
    reference: Calculator,
    systems: list[Atoms],
    prepare: Callable[[Atoms], Atoms] = lambda atoms: atoms,
    stress_scale: Callable[[Atoms], float] = lambda atoms: 1.0,
) -> list[tuple[dict, dict]]:
    """Energy per atom, forces and (for 3D cells) stress of each system equal to ``reference``'s.

    ``prepare`` gives the reference its own form of a system (a box for a molecule with no cell,
    when the package cannot take one); ``stress_scale`` converts its stress where its convention
    differs from ASE's (documented at the call). Returns our results and the reference's, per system.
    """
    ours = BatchedCalculator(model, device="cpu").calculate_batch(systems, ["energy", "forces", "stress"])
    pairs = []
    for index, (atoms, result) in enumerate(zip(systems, ours, strict=True)):
        theirs = prepare(atoms.copy())
        theirs.calc = reference
        where = f"system {index} ({atoms.get_chemical_formula()}, pbc={atoms.pbc.tolist()})"
        energy = theirs.get_potential_energy()
        assert abs(result["energy"] - energy) / len(atoms) < MLIP_ENERGY_PER_ATOM_ATOL, where
        np.testing.assert_allclose(
            result["forces"], theirs.get_forces(), atol=MLIP_FORCES_ATOL, err_msg=where
        )
        if atoms.cell.rank == 3:
            np.testing.assert_allclose(
                result["stress"],
                theirs.get_stress() * stress_scale(atoms),
                atol=MLIP_STRESS_ATOL,
                err_msg=where,
            )
        else:
            assert "stress" not in result, where
        pairs.append((result, dict(reference.results)))
    return pairs
