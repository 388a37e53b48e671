"""CHGNet by ``load("chgnet")``: chgnet's own calculator's numbers, per system, to float32 round-off."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models.pretrained_checks import assert_matches_own_calculator
from tests.structures import mlip_systems
from tests.tolerances import MLIP_ENERGY_PER_ATOM_ATOL, MLIP_FORCES_ATOL

dynamics = pytest.importorskip("chgnet.model.dynamics", reason="chgnet is not installed (extra [chgnet])")


def _boxed(atoms):
    """CHGNet's calculator goes through pymatgen, which needs a lattice: a molecule gets a 30 Å box
    (periodic images 30 Å away, beyond its 6 Å cutoff: the same graph)."""
    if atoms.cell.rank < 3:
        atoms.cell, atoms.pbc = [30.0, 30.0, 30.0], True
    return atoms


# CHGNet's own graph assembly converts a tensor that requires grad to a scalar, and torch warns.
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")
def test_ragged_batch_matches_chgnet_calculator():
    from nvalchemi_ase.models import load

    reference = dynamics.CHGNetCalculator(use_device="cpu", return_site_energies=True)
    systems = mlip_systems()
    for ours, theirs in assert_matches_own_calculator(load("chgnet"), reference, systems, prepare=_boxed):
        np.testing.assert_allclose(ours["magmoms"], theirs["magmoms"], atol=MLIP_FORCES_ATOL)
        np.testing.assert_allclose(ours["energies"], theirs["energies"], atol=MLIP_ENERGY_PER_ATOM_ATOL)
        assert ours["energies"].sum() == pytest.approx(ours["energy"], rel=1e-6)
