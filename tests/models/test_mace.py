"""MACE through ``load("mace:<file>")``: equal to mace's own calculator, system by system.

No MACE weights ship with mace-torch and nothing is downloaded here: the test
builds a small MACE network (random weights, seven elements), saves it as a
model file, and loads that, as a user would load theirs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.models.pretrained_checks import assert_matches_own_calculator
from tests.structures import mlip_systems
from tests.tolerances import MLIP_ENERGY_PER_ATOM_ATOL

mace_modules = pytest.importorskip("mace.modules", reason="mace-torch is not installed (extra [mace])")
ELEMENTS = [1, 6, 8, 11, 14, 17, 29]
CUTOFF = 5.0


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    from e3nn import o3

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)  # MACE files are float64 unless trained otherwise
    try:
        interaction = mace_modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        network = mace_modules.MACE(
            r_max=CUTOFF,
            num_bessel=8,
            num_polynomial_cutoff=6,
            max_ell=2,
            interaction_cls=interaction,
            interaction_cls_first=interaction,
            num_interactions=2,
            num_elements=len(ELEMENTS),
            hidden_irreps=o3.Irreps("8x0e + 8x1o"),
            MLP_irreps=o3.Irreps("8x0e"),
            gate=torch.nn.functional.silu,
            atomic_energies=np.linspace(-3.0, -1.0, len(ELEMENTS)),
            avg_num_neighbors=8.0,
            atomic_numbers=ELEMENTS,
            correlation=2,
            radial_type="bessel",
        )
    finally:
        torch.set_default_dtype(previous)
    path = tmp_path_factory.mktemp("mace") / "small.model"
    torch.save(network, path)
    return path


def _mace_volume_over_ase_volume(atoms) -> float:
    """MACE divides the virial by the volume of the cell it searched neighbours in, whose
    non-periodic rows it replaces by long stand-ins (``mace.data.neighborhood.get_neighborhood``):
    for a slab its stress is the ASE stress times V_ase / V_mace. We follow ASE (the Atoms' cell
    volume, as ASE's own EMT does), so the comparison undoes MACE's choice."""
    from mace.data.neighborhood import get_neighborhood

    cell = get_neighborhood(atoms.positions, CUTOFF, tuple(atoms.pbc.tolist()), atoms.cell.array.copy())[3]
    return abs(np.linalg.det(cell)) / atoms.cell.volume


# mace warns on import about optional accelerations and on torch.load of a full module
@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
def test_ragged_batch_matches_mace_calculator(model_file):
    from mace.calculators import MACECalculator

    from nvalchemi_ase.models import load

    reference = MACECalculator(model_paths=str(model_file), device="cpu", default_dtype="float64")
    model = load(f"mace:{model_file}")
    assert model.dtype == torch.float64 and model.cutoff == CUTOFF
    pairs = assert_matches_own_calculator(
        model, reference, mlip_systems(), stress_scale=_mace_volume_over_ase_volume
    )
    for ours, theirs in pairs:
        np.testing.assert_allclose(ours["energies"], theirs["energies"], atol=MLIP_ENERGY_PER_ATOM_ATOL)
