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


def test_angles_at_the_bond_cutoff_follow_chgnets_own_graph():
    """A bond exactly 3 Å long (CHGNet's bond-graph cutoff) makes the same angles as CHGNet's converter:
    it may be an angle's first bond, never its second (``Graph.line_graph_adjacency_list``)."""
    import torch
    from ase import Atoms
    from pymatgen.io.ase import AseAtomsAdaptor

    from nvalchemi_ase import BatchedCalculator
    from nvalchemi_ase.models import load

    # A 32 Å box (a power of two: fractional coordinates and distances exact): bonds of 3 Å and 2 Å at atom 0.
    atoms = Atoms("Cu3", positions=[[4, 4, 4], [7, 4, 4], [4, 6, 4]], cell=[32, 32, 32], pbc=True)
    model = load("chgnet")
    seen = []
    model.module.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    BatchedCalculator(model, device="cpu").calculate_batch([atoms], ["energy", "forces"])
    graph = seen[0]
    edges = list(zip(*graph.edge_index.tolist(), map(tuple, graph.unit_shifts.tolist()), strict=True))
    ours = {(edges[a], edges[b]) for a, b in graph.triplets.tolist()}

    theirs_graph = model.module.network.graph_converter(AseAtomsAdaptor.get_structure(atoms))
    images = theirs_graph.neighbor_image.to(torch.long).tolist()
    directed = [(i, j, tuple(s)) for (i, j), s in zip(theirs_graph.atom_graph.tolist(), images, strict=True)]
    theirs = {(directed[d1], directed[d2]) for _, _, d1, _, d2 in theirs_graph.bond_graph.tolist()}
    assert ours == theirs == {((0, 1, (0, 0, 0)), (0, 2, (0, 0, 0)))}
