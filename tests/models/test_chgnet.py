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


def _own_results(atoms, reference):
    """CHGNet's own calculator's magnetic moments and site energies for ``atoms`` where they stand."""
    theirs = _boxed(atoms.copy())
    theirs.calc = reference
    theirs.get_potential_energy()
    return reference.results["magmoms"], reference.results["energies"]


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")
def test_magnetic_moments_reach_the_lookalike_atoms_and_frames(tmp_path):
    """After look-alike Langevin, each ``atoms.calc.results`` and each trajectory's last frame carry
    CHGNet's ``magmoms`` and per-atom ``energies`` for the final positions, as its own calculator gives."""
    from ase import units
    from ase.io import read

    from nvalchemi_ase import BatchedCalculator
    from nvalchemi_ase.md.langevin import Langevin
    from nvalchemi_ase.models import load

    systems = [mlip_systems()[k] for k in (0, 2, 5)]  # bulk, binary crystal, triclinic
    calculator = BatchedCalculator(load("chgnet"), device="cpu")
    for atoms in systems:
        atoms.calc = calculator
    rngs = [np.random.default_rng(seed) for seed in range(len(systems))]
    dyn = Langevin(
        systems,
        1 * units.fs,
        temperature_K=300,
        friction=0.02,
        fixcm=False,
        rng=rngs,
        trajectory=str(tmp_path / "md.traj"),
    )
    dyn.run(2)
    dyn.close()
    reference = dynamics.CHGNetCalculator(use_device="cpu", return_site_energies=True)
    for k, atoms in enumerate(systems):
        magmoms, energies = _own_results(atoms, reference)
        np.testing.assert_allclose(atoms.calc.results["magmoms"], magmoms, atol=MLIP_FORCES_ATOL)
        np.testing.assert_allclose(atoms.calc.results["energies"], energies, atol=MLIP_ENERGY_PER_ATOM_ATOL)
        frame = read(tmp_path / f"md_{k}.traj", -1)
        np.testing.assert_allclose(frame.get_magnetic_moments(), magmoms, atol=MLIP_FORCES_ATOL)


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")
def test_magnetic_moments_reach_the_command_lines_frames(tmp_path):
    """``nvalchemi-ase run --model chgnet``: frames and final structures carry ``magmoms`` (about 15 s)."""
    from ase.io import read, write

    from nvalchemi_ase.cli import EXIT_OK, main

    source = tmp_path / "in.extxyz"
    write(source, [mlip_systems()[k] for k in (0, 2)])
    out = tmp_path / "run"
    arguments = ["run", str(source), "--model", "chgnet", "--relax-steps", "1", "--steps", "1"]
    assert main([*arguments, "--trajectory-interval", "1", "-o", str(out), "-q"]) == EXIT_OK
    reference = dynamics.CHGNetCalculator(use_device="cpu", return_site_energies=True)
    for k, final in enumerate(read(out / "final.extxyz", ":")):
        magmoms, _ = _own_results(final, reference)
        np.testing.assert_allclose(final.get_magnetic_moments(), magmoms, atol=MLIP_FORCES_ATOL)
        frame = read(out / "trajectories" / f"system_{k:05d}.traj", -1)
        magmoms, _ = _own_results(frame, reference)
        np.testing.assert_allclose(frame.get_magnetic_moments(), magmoms, atol=MLIP_FORCES_ATOL)


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True:UserWarning")
def test_subnormals_flushed_or_kept_give_the_same_results_to_float32_round_off():
    from nvalchemi_ase import BatchedCalculator
    from nvalchemi_ase.models import load

    systems = mlip_systems()
    flushed, kept = (
        BatchedCalculator(load("chgnet", flush_denormals=flush), device="cpu").calculate_batch(
            systems, ["energy", "forces", "stress"]
        )
        for flush in (None, False)
    )
    for index, (a, b) in enumerate(zip(flushed, kept, strict=True)):
        assert a["energy"] == pytest.approx(b["energy"], rel=1e-6), index
        np.testing.assert_allclose(a["forces"], b["forces"], atol=1e-5, err_msg=str(index))
        np.testing.assert_allclose(a["magmoms"], b["magmoms"], atol=1e-6, err_msg=str(index))
