"""WrapPeriodicHook: ASE's wrap along periodic axes (triclinic, slabs, wires), physics unchanged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.geometry import wrap_positions as ase_wrap_positions

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.dynamics.base import DynamicsStage
from nvalchemi_ase.hooks.periodic import WrapPeriodicHook, wrap_positions
from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.models import LennardJones, evaluate
from tests.cuda import no_syncs
from tests.structures import argon_bulk, ragged_systems, random_cells
from tests.tolerances import FLOAT64_ATOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
POSITION_ATOL = 1e-12  # Å: the same lattice translations, rounded differently


def _wrap(batch: Batch) -> None:
    stage = DynamicsStage.AFTER_POST_UPDATE
    WrapPeriodicHook()(HookContext(batch=batch, dynamics=None, step_count=0, stage=stage), stage)


def _displaced(atoms: Atoms, seed: int) -> Atoms:
    """The same structure with atoms moved by whole lattice vectors along periodic axes (out of the cell).

    Atoms are also nudged off the cell faces (a lattice point, such as the
    origin, may wrap to either face, by round-off, in any implementation).
    """
    atoms = atoms.copy()
    rng = np.random.default_rng(seed)
    atoms.positions += rng.normal(scale=0.01, size=(len(atoms), 3))
    images = rng.integers(-3, 4, size=(len(atoms), 3)) * atoms.pbc
    atoms.positions += images @ atoms.cell.array
    return atoms


def _wire_and_slab_with_zero_rows() -> list[Atoms]:
    rng = np.random.default_rng(7)
    wire = Atoms(
        "H3", positions=rng.normal(scale=4.0, size=(3, 3)), cell=[[2.1, 0.3, 0], [0, 0, 0], [0, 0, 0]]
    )
    wire.pbc = [True, False, False]
    slab = Atoms(
        "H5", positions=rng.normal(scale=6.0, size=(5, 3)), cell=[[3.0, 0, 0], [1.0, 3.0, 0.5], [0, 0, 0]]
    )
    slab.pbc = [True, True, False]
    return [wire, slab]


def test_defaults_to_after_post_update_and_is_a_hook():
    hook = WrapPeriodicHook()
    assert isinstance(hook, Hook)
    assert hook.stage == DynamicsStage.AFTER_POST_UPDATE and hook.frequency == 1
    assert WrapPeriodicHook(frequency=5, stage=DynamicsStage.AFTER_STEP).stage == DynamicsStage.AFTER_STEP


def test_the_toolkits_values_in_a_ten_angstrom_cube():
    atoms = Atoms("Ar2", positions=[[12.0, -3.0, 25.0], [-1.0, -1.0, -1.0]], cell=[10.0] * 3, pbc=True)
    batch = Batch.from_atoms(atoms, device="cpu")
    _wrap(batch)
    expected = torch.tensor([[2.0, 7.0, 5.0], [9.0, 9.0, 9.0]], dtype=torch.float64)
    torch.testing.assert_close(batch.positions, expected, rtol=0, atol=FLOAT64_ATOL)


def test_wrapping_twice_changes_nothing():
    batch = Batch.from_atoms(random_cells(16, seed=3) + _wire_and_slab_with_zero_rows(), device="cpu")
    _wrap(batch)
    once = batch.positions.clone()
    _wrap(batch)
    assert torch.equal(batch.positions, once)


@pytest.mark.parametrize("seed", range(3))
def test_triclinic_cells_and_mixed_pbc_equal_ases_wrap(seed):
    systems = random_cells(16, seed=seed) + ragged_systems(seed) + _wire_and_slab_with_zero_rows()
    systems = [_displaced(atoms, seed + k) for k, atoms in enumerate(systems)]
    batch = Batch.from_atoms(systems, device="cpu")
    _wrap(batch)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        expected = ase_wrap_positions(atoms.positions, atoms.cell.array, pbc=atoms.pbc, eps=0.0)
        np.testing.assert_allclose(
            batch.positions[ptr[b] : ptr[b + 1]].numpy(),
            expected,
            rtol=0,
            atol=POSITION_ATOL,
            err_msg=f"system {b}",
        )


def test_a_slab_keeps_its_heights_and_a_molecule_stays_put():
    slab = _displaced(ragged_systems()[3], seed=1)  # fcc111 with vacuum, pbc [1, 1, 0]
    slab.positions[:, 2] += np.linspace(-30.0, 30.0, len(slab))  # far outside the cell along z
    molecule = Atoms("Ar3", positions=[[100.0, -50.0, 3.0], [-7.0, 0.0, 0.0], [0.0, 0.0, 9.0]])  # no cell
    batch = Batch.from_atoms([slab, molecule], device="cpu")
    _wrap(batch)
    slab_positions = batch.positions[: len(slab)]
    assert torch.equal(slab_positions[:, 2], torch.as_tensor(slab.positions[:, 2]))
    fractional = np.linalg.solve(slab.cell.array.T, slab_positions.numpy().T).T
    assert (fractional[:, :2] >= -1e-12).all() and (fractional[:, :2] < 1.0 + 1e-12).all()
    assert torch.equal(batch.positions[len(slab) :], torch.as_tensor(molecule.positions))


def test_wrapped_positions_give_the_same_lj_energy_and_forces():
    systems = [_displaced(argon_bulk(2, seed=k), seed=k) for k in range(2)] + [
        _displaced(ragged_systems()[1], 9)
    ]
    batch = Batch.from_atoms(systems, device="cpu")
    before = evaluate(LennardJones(**ARGON), batch)
    _wrap(batch)
    after = evaluate(LennardJones(**ARGON), batch)
    assert not torch.equal(batch.positions, Batch.from_atoms(systems, device="cpu").positions)  # it did wrap
    torch.testing.assert_close(after["energy"], before["energy"], rtol=1e-12, atol=0)
    torch.testing.assert_close(after["forces"], before["forces"], rtol=0, atol=FLOAT64_ATOL)


def test_nve_with_wrapping_is_the_wrapped_trajectory():
    rng = np.random.default_rng(4)
    systems = [argon_bulk(2, seed=k) for k in range(2)]
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=0.05, size=(len(atoms), 3)))
    plain, wrapped = (Batch.from_atoms(systems, device="cpu") for _ in range(2))
    NVE(LennardJones(**ARGON), dt=5.0).run(plain, n_steps=40)
    NVE(LennardJones(**ARGON), dt=5.0, hooks=[WrapPeriodicHook()]).run(wrapped, n_steps=40)
    expected = wrap_positions(plain.positions, plain.cell, plain.pbc, plain.batch_idx)
    assert not torch.equal(expected, plain.positions)  # some atoms left the cell
    torch.testing.assert_close(wrapped.positions, expected, rtol=0, atol=1e-10)
    torch.testing.assert_close(wrapped.velocities, plain.velocities, rtol=0, atol=1e-12)


@pytest.mark.parametrize("frequency", [0, -1, 1.5, True])
def test_bad_frequency_is_refused(frequency):
    with pytest.raises(ValueError, match="frequency"):
        WrapPeriodicHook(frequency=frequency)


@pytest.mark.gpu
def test_wrapping_on_cuda_equals_cpu_without_host_syncs():
    systems = [_displaced(atoms, k) for k, atoms in enumerate(random_cells(8, seed=5) + ragged_systems())]
    cpu = Batch.from_atoms(systems, device="cpu")
    cuda = cpu.to("cuda")
    _wrap(cpu)
    with no_syncs():
        _wrap(cuda)
    torch.testing.assert_close(cuda.positions.cpu(), cpu.positions, rtol=0, atol=POSITION_ATOL)
