"""EMT equals ase.calculators.emt.EMT per system inside ragged, mixed batches."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, fcc111, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.emt import EMT as AseEMT
from ase.cluster import Icosahedron
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models import evaluate
from nvalchemi_ase.models.emt import EMT
from nvalchemi_ase.neighbors import NeighborCapacityError, NeighborList
from tests.models.compare import (
    assert_matches_ase,
    energy_of,
    finite_difference_forces,
    finite_difference_stress,
    model_forces,
)
from tests.tolerances import FINITE_DIFFERENCE_ATOL, FLOAT32_RTOL, FLOAT64_RTOL

METALS = ("Al", "Cu", "Ag", "Au", "Ni", "Pd", "Pt")
LATTICE = {"Al": 4.05, "Cu": 3.61, "Ag": 4.09, "Au": 4.08, "Ni": 3.52, "Pd": 3.89, "Pt": 3.92}


def rattled(atoms: Atoms, seed: int, amount: float = 0.1) -> Atoms:
    atoms.rattle(amount, seed=seed)
    return atoms


def alloy(symbols: tuple[str, ...], repeat: int, seed: int) -> Atoms:
    """A random substitutional alloy on the fcc lattice of the first element."""
    atoms = bulk(symbols[0], "fcc", a=LATTICE[symbols[0]], cubic=True).repeat(repeat)
    rng = np.random.default_rng(seed)
    atoms.symbols = rng.choice(symbols, size=len(atoms))
    return rattled(atoms, seed)


def metal_systems(seed: int = 0) -> list[Atoms]:
    """Every metal, in cells from far below the cutoff to a few shells, periodic or not."""
    systems = [rattled(bulk(m, "fcc", a=LATTICE[m], cubic=True), seed + k) for k, m in enumerate(METALS)]
    systems.append(rattled(bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2), seed + 10))  # 32 atoms
    systems.append(rattled(bulk("Au", "fcc", a=4.08).repeat((3, 2, 2)), seed + 11))  # triclinic primitive
    systems.append(rattled(fcc111("Pt", size=(2, 2, 3), vacuum=5.0), seed + 12))  # surface, 3D cell
    wire = rattled(bulk("Ni", "fcc", a=3.52, cubic=True).repeat((3, 1, 1)), seed + 13)
    wire.pbc = (True, False, False)  # periodic along x only, cell spans 3D
    systems.append(wire)
    return systems


def mixed_systems(seed: int = 0) -> list[Atoms]:
    """Alloys, clusters without a cell, molecules of H, C, N, O, lone atoms."""
    cluster = rattled(Icosahedron("Pd", noshells=2), seed + 1)  # 13 atoms, no cell
    cluster.center()
    adsorbate = fcc111("Pt", size=(2, 2, 2), vacuum=6.0)
    adsorbate += Atoms("CO", positions=[[0.0, 0.0, 0.0], [0.0, 0.0, 1.15]])
    adsorbate.positions[-2:] += adsorbate.positions[:4].mean(axis=0) + np.array([0.0, 0.0, 3.2])
    return [
        alloy(("Cu", "Au"), 2, seed + 2),
        alloy(("Al", "Ni", "Pd", "Pt", "Ag"), 1, seed + 3),
        cluster,
        molecule("CH4"),
        rattled(molecule("H2O"), seed + 4, 0.05),
        rattled(adsorbate, seed + 5, 0.05),
        Atoms("N"),  # no neighbour at all
        Atoms("Cu2", positions=[[0, 0, 0], [9.0, 0, 0]]),  # beyond the cutoff
        Atoms("O", cell=[[2.2, 0.0, 0.0], [0.9, 2.4, 0.0], [0.3, 0.5, 2.6]], pbc=True),  # its own images
    ]


@pytest.mark.parametrize("asap_cutoff", [False, True])
def test_metals_match_ase(asap_cutoff):
    assert_matches_ase(EMT(asap_cutoff), lambda: AseEMT(asap_cutoff=asap_cutoff), metal_systems())


@pytest.mark.parametrize("asap_cutoff", [False, True])
def test_alloys_clusters_and_molecules_match_ase(asap_cutoff):
    assert_matches_ase(EMT(asap_cutoff), lambda: AseEMT(asap_cutoff=asap_cutoff), mixed_systems())


def test_one_batch_of_everything_in_any_order():
    systems = metal_systems(seed=3) + mixed_systems(seed=3)
    order = np.random.default_rng(0).permutation(len(systems))
    assert_matches_ase(EMT(asap_cutoff=True), lambda: AseEMT(asap_cutoff=True), [systems[k] for k in order])


def test_a_system_alone_equals_itself_in_a_batch():
    systems = mixed_systems(seed=5)
    model = EMT()
    together = evaluate(model, Batch.from_atoms(systems, device="cpu"), ("energy", "forces"))
    starts = np.cumsum([0] + [len(a) for a in systems])
    for b, atoms in enumerate(systems):
        alone = evaluate(EMT(), Batch.from_atoms(atoms, device="cpu"))
        torch.testing.assert_close(alone["energy"][0], together["energy"][b], rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(
            alone["forces"], together["forces"][starts[b] : starts[b + 1]], rtol=1e-13, atol=1e-13
        )


def test_cutoff_and_properties_are_ases():
    for asap in (False, True):
        _, rc_list, _ = AseEMT(asap_cutoff=asap)._calc_cutoff(Atoms("Ag"))  # Ag has the largest s0
        assert EMT(asap).cutoff == pytest.approx(rc_list, rel=1e-15)
    wanted = {"energy", "free_energy", "energies", "forces", "stress"}
    assert set(EMT.implemented_properties) == wanted
    assert wanted <= set(AseEMT.implemented_properties)


def test_forces_and_stress_are_derivatives_of_the_energy():
    atoms = alloy(("Cu", "Au", "Ni"), 1, seed=7)
    shear = np.array([[0.0, 0.3, 0.1], [0.2, 0.0, 0.0], [0.0, -0.2, 0.0]])
    atoms.set_cell(atoms.cell.array + shear, scale_atoms=True)  # triclinic
    model = EMT()
    np.testing.assert_allclose(
        model_forces(model, atoms), finite_difference_forces(model, atoms), atol=FINITE_DIFFERENCE_ATOL
    )
    stress = evaluate(model, Batch.from_atoms(atoms, device="cpu"), ("energy", "forces", "stress"))["stress"]
    np.testing.assert_allclose(
        stress[0].numpy(), finite_difference_stress(model, atoms), atol=FINITE_DIFFERENCE_ATOL
    )


def test_unsupported_element_is_named_with_its_system_before_computing():
    systems = [bulk("Cu", "fcc", a=3.61), Atoms("FeCu", positions=[[0, 0, 0], [2.5, 0, 0]]), Atoms("Fe")]
    model = EMT()
    with pytest.raises(NotImplementedError, match=r"No EMT-potential for Fe in system\(s\) \[1, 2\]"):
        evaluate(model, Batch.from_atoms(systems, device="cpu"))
    assert model.neighbor_list.rebuilds == 0  # refused before any neighbour search


def test_elements_changed_in_place_are_checked_again():
    model = EMT()
    batch = Batch.from_atoms([bulk("Cu", "fcc", a=3.61), bulk("Al", "fcc", a=4.05)], device="cpu")
    evaluate(model, batch)
    batch.atomic_numbers[1] = 26
    with pytest.raises(NotImplementedError, match=r"Fe in system\(s\) \[1\]"):
        evaluate(model, batch)


def test_bfgs_follows_the_same_path_as_with_ases_emt():
    start = alloy(("Cu", "Pd"), 2, seed=11)
    del start[[0, 5]]  # vacancies give the relaxation something to do
    ours, theirs = start.copy(), start.copy()
    ours.calc, theirs.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    for atoms in (ours, theirs):
        BFGS(atoms, logfile=None).run(fmax=1e-3, steps=15)
    np.testing.assert_allclose(ours.positions, theirs.positions, rtol=0, atol=1e-9)
    assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), rel=FLOAT64_RTOL)
    np.testing.assert_allclose(ours.get_stress(), theirs.get_stress(), rtol=1e-9, atol=1e-12)


def test_calculator_omits_stress_where_ase_raises():
    cluster = Icosahedron("Cu", noshells=2)
    ours, theirs = cluster.copy(), cluster.copy()
    ours.calc, theirs.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), rel=FLOAT64_RTOL)
    for atoms in (ours, theirs):
        with pytest.raises(PropertyNotImplementedError):
            atoms.get_stress()
    calc = BatchedCalculator(EMT(asap_cutoff=True, skin=0.3), device="cpu")
    assert json.loads(json.dumps(calc.todict()))["model_parameters"] == {
        "asap_cutoff": True,
        "skin": 0.3,
        "max_neighbors": None,
        "use_kernel": True,
    }


def test_engine_nve_follows_ases_velocity_verlet():
    atoms = alloy(("Cu", "Au"), 2, seed=13)
    atoms.set_velocities(np.random.default_rng(1).normal(scale=0.02, size=(len(atoms), 3)))
    batch = Batch.from_atoms(atoms, device="cpu")
    NVE(EMT(), dt=2.0).run(batch, n_steps=15)
    reference = atoms.copy()
    reference.calc = AseEMT()
    VelocityVerlet(reference, timestep=2.0 * units.fs).run(15)
    np.testing.assert_allclose(batch.positions.numpy(), reference.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(batch.velocities.numpy(), reference.get_velocities(), rtol=0, atol=1e-10)


def test_shared_neighbor_list_is_used_and_gives_the_same_numbers():
    systems = metal_systems(seed=2)[-4:]
    batch = Batch.from_atoms(systems, device="cpu")
    own = evaluate(EMT(), batch, ("energy", "forces", "stress"))
    model = EMT()
    batch.neighbors = NeighborList(model.cutoff, skin=1.0).update(batch)
    shared = evaluate(model, batch, ("energy", "forces", "stress"))
    assert model.neighbor_list.rebuilds == 0
    for key in ("energy", "forces", "stress", "energies"):
        torch.testing.assert_close(shared[key], own[key], rtol=1e-13, atol=1e-13, equal_nan=True)


@pytest.mark.parametrize("threads", [1, 2])
def test_kernel_and_tensor_paths_agree(threads, monkeypatch):
    """The fused kernels give the tensor path's numbers, whatever the number of CPU threads."""
    from nvalchemi_ase.models import emt_kernel

    monkeypatch.setattr(emt_kernel, "ROWS_PER_THREAD", 8)  # split even these small batches
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for asap_cutoff in (False, True):
            batch = Batch.from_atoms(metal_systems(seed=3), device="cpu")
            tensor = evaluate(EMT(asap_cutoff, use_kernel=False), batch, ("energy", "forces", "stress"))
            fused = evaluate(EMT(asap_cutoff), batch, ("energy", "forces", "stress"))
            for key in ("energy", "forces", "stress", "energies"):
                torch.testing.assert_close(fused[key], tensor[key], rtol=1e-12, atol=1e-12, equal_nan=True)
    finally:
        torch.set_num_threads(previous)


def test_overflowing_neighbor_list_poisons_only_its_systems():
    batch = Batch.from_atoms([Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]]), bulk("Cu", a=3.61)], "cpu")
    dense_cell = batch.cell.clone()
    batch.cell = dense_cell * torch.tensor([1.0, 3.0]).view(2, 1, 1)  # dilute: the first build sizes the room
    model = EMT(max_neighbors=4)
    model.neighbor_list.sync_check = False  # as on CUDA: flag now, raise at the next update
    evaluate(model, batch)
    batch.cell = dense_cell  # 78 neighbours within the list radius, room for 4
    outputs = evaluate(model, batch, ("energy", "forces", "stress"))
    assert outputs["energy"][:, 0].isnan().tolist() == [False, True]
    assert outputs["forces"].isnan().all(dim=1).tolist() == [False, False, True]
    assert outputs["energies"].isnan().tolist() == [False, False, True]
    with pytest.raises(NeighborCapacityError):
        evaluate(model, batch)


def test_float32_is_close_to_float64():
    systems = mixed_systems(seed=9)[:3]
    model = EMT()
    high = evaluate(model, Batch.from_atoms(systems, device="cpu"))
    low = evaluate(model, Batch.from_atoms(systems, device="cpu", dtype=torch.float32))
    assert low["forces"].dtype == torch.float32
    torch.testing.assert_close(low["energy"].double(), high["energy"], rtol=FLOAT32_RTOL, atol=FLOAT32_RTOL)
    torch.testing.assert_close(low["forces"].double(), high["forces"], rtol=FLOAT32_RTOL, atol=1e-3)


def test_bad_parameters_are_refused():
    with pytest.raises(TypeError, match="asap_cutoff"):
        EMT(asap_cutoff="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="skin"):
        EMT(skin=-0.1)


def test_isolated_atom_has_minus_e0():
    assert energy_of(EMT(), Atoms("Cu")) == pytest.approx(3.51, abs=1e-14)


def test_a_pickled_model_gives_the_same_numbers():
    model = EMT()
    batch = Batch.from_atoms(mixed_systems()[:2], device="cpu")
    before = evaluate(model, batch)["energy"]
    torch.testing.assert_close(evaluate(pickle.loads(pickle.dumps(model)), batch)["energy"], before)


@pytest.mark.slow
@pytest.mark.parametrize("asap_cutoff", [False, True])
def test_larger_alloys_match_ase(asap_cutoff):
    systems = [alloy(("Cu", "Ag", "Au"), 5, seed=21), alloy(("Ni", "Pt", "Al"), 4, seed=22)]
    slab = fcc111("Cu", size=(6, 6, 6), vacuum=6.0)
    slab.symbols[::3] = "Pd"
    systems.append(rattled(slab, 23))
    assert_matches_ase(EMT(asap_cutoff), lambda: AseEMT(asap_cutoff=asap_cutoff), systems)


@pytest.mark.gpu
def test_cuda_matches_cpu():
    systems = metal_systems(seed=4) + mixed_systems(seed=4)
    cpu = evaluate(EMT(), Batch.from_atoms(systems, device="cpu"), ("energy", "forces", "stress"))
    cuda = evaluate(EMT().cuda(), Batch.from_atoms(systems, device="cuda"), ("energy", "forces", "stress"))
    for key in ("energy", "forces", "stress", "energies"):
        torch.testing.assert_close(cuda[key].cpu(), cpu[key], rtol=1e-11, atol=1e-12, equal_nan=True)


def test_image_vectors_made_once_give_the_bits_of_those_made_in_the_kernels(monkeypatch):
    from nvalchemi_ase.models import emt_kernel

    batch = Batch.from_atoms(metal_systems(seed=3) + mixed_systems(seed=3), device="cpu")
    model = EMT()
    once = evaluate(model, batch, ("energy", "forces", "stress"))
    assert "image_vectors" in model.neighbor_list.update(batch).__dict__  # the kernels did read them
    monkeypatch.setattr(emt_kernel, "uses_image_vectors", lambda neighbors: False)
    made = evaluate(EMT(), batch, ("energy", "forces", "stress"))
    for key in ("energy", "forces", "energies", "stress"):
        assert torch.equal(once[key].nan_to_num(), made[key].nan_to_num()), key
