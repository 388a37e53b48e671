"""NPT and MelchionnaNPT against ASE's own classes (``ase.md.npt``, ``ase.md.melchionna``); the engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.constraints import FixAtoms
from ase.md.melchionna import MelchionnaNPT as AseMelchionnaNPT
from ase.md.npt import NPT as AseNPT

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import MelchionnaNPT as MelchionnaEngine
from nvalchemi_ase.md.melchionna import MelchionnaNPT
from nvalchemi_ase.md.npt import NPT
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, ours, theirs, with_velocities
from tests.structures import argon_bulk
from tests.tolerances import ASE_MD_ATOL

DT = 2.0 * units.fs
STEPS = 40
PFACTOR = (75 * units.fs) ** 2 * 0.01
CASES = {
    "npt": {"temperature_K": 80.0, "externalstress": 1e-4, "ttime": 25 * units.fs, "pfactor": PFACTOR},
    "voigt-mask-no-thermostat": {
        "temperature_K": 80.0, "externalstress": [1e-4, 0.0, 2e-4, 1e-5, 0.0, 0.0], "pfactor": PFACTOR,
        "mask": (1, 1, 0),
    },
    "nvt": {"temperature_K": 80.0, "externalstress": 0.0, "ttime": 25 * units.fs},
}  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore:NPT thermostat has been moved")


def _start(seed: int = 1, repeat: int = 2, lower: bool = False):
    atoms = with_velocities([argon_bulk(repeat, seed=seed)], seed=seed)[0]
    shear = np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 1.0]])
    atoms.set_cell(atoms.cell @ (shear.T if lower else shear), True)
    return atoms


def _assert_same(mine, reference, label):
    for name, a, b in (
        ("positions", mine.positions, reference.positions),
        ("momenta", mine.get_momenta(), reference.get_momenta()),
        ("cell", mine.cell[:], reference.cell[:]),
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=ASE_MD_ATOL, err_msg=f"{label} {name}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_npt_equals_ase_step_by_step(name):
    start = _start()
    mine, reference = ours(start), theirs(start)
    with pytest.warns(FutureWarning, match="moved/renamed"):
        dyn = NPT(mine, DT, **CASES[name])
    ase_dyn = AseNPT(reference, DT, **CASES[name])
    assert dyn.todict() == ase_dyn.todict()
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            _assert_same(mine, reference, f"{name} step {step}")
    _assert_same(mine, reference, name)
    np.testing.assert_allclose(dyn.get_strain_rate(), ase_dyn.get_strain_rate(), rtol=0, atol=1e-12)
    if "pfactor" in CASES[name]:
        assert not np.allclose(mine.cell[:], start.cell[:], rtol=0, atol=1e-3)  # the cell did move


def test_a_ragged_list_of_upper_and_lower_cells_with_per_system_values():
    systems = [_start(2), _start(3, repeat=1, lower=True), _start(4)]
    values = {
        "temperature_K": [80.0, 60.0, 100.0],
        "externalstress": [1e-4, -2e-4, 0.0],
        "ttime": [25 * units.fs, 40 * units.fs, 30 * units.fs],
        "pfactor": [PFACTOR, 2 * PFACTOR, 0.5 * PFACTOR],
    }
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    MelchionnaNPT(mine, DT, **values).run(STEPS)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseMelchionnaNPT(reference, DT, **{key: value[b] for key, value in values.items()}).run(STEPS)
        _assert_same(mine[b], reference, f"system {b}")


def test_the_engine_runs_on_a_batch_in_the_stage_loop():
    systems = [_start(5), _start(6, repeat=1)]
    for atoms in systems:  # the engine removes the mean momentum on entering, as ASE on construction
        atoms.set_momenta(atoms.get_momenta() - atoms.get_momenta().sum(0) / len(atoms))
    batch = Batch.from_atoms(systems, dtype=torch.float64)
    engine = MelchionnaEngine(
        LennardJones(**ARGON), dt=2.0, temperature=[80.0, 120.0], externalstress=[1e-4, 3e-4],
        ttime=25.0, pfactor=[75.0**2 * 0.01, 60.0**2 * 0.01],
    )  # fmt: skip
    engine.run(batch, n_steps=20)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseMelchionnaNPT(
            reference, DT, temperature_K=[80.0, 120.0][b], externalstress=[1e-4, 3e-4][b],
            ttime=25 * units.fs, pfactor=[75.0**2 * 0.01, 60.0**2 * 0.01][b] * units.fs**2,
        ).run(20)  # fmt: skip
        rows = slice(int(batch.ptr[b]), int(batch.ptr[b + 1]))
        positions = batch.positions[rows].numpy()
        np.testing.assert_allclose(positions, reference.positions, rtol=0, atol=ASE_MD_ATOL)
        np.testing.assert_allclose(batch.cell[b].numpy(), reference.cell[:], rtol=0, atol=ASE_MD_ATOL)


def test_bad_input_raises():
    start = _start()
    with pytest.raises(TypeError, match="Missing 'externalstress'"):
        MelchionnaNPT(ours(start), DT, temperature_K=80.0, pfactor=PFACTOR)
    with pytest.raises(ValueError, match="symmetric"):
        MelchionnaNPT(ours(start), DT, temperature_K=80.0, externalstress=np.triu(np.ones((3, 3))))
    fixed = start.copy()
    fixed.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(NotImplementedError, match=r"atoms\[1\] has constraints"):
        MelchionnaNPT([ours(start), ours(fixed)], DT, temperature_K=80.0, externalstress=0.0)
    skew = start.copy()
    skew.set_cell(skew.cell @ np.array([[1.0, 0.0, 0.03], [0.05, 1.0, 0.0], [0.0, 0.03, 1.0]]), True)
    systems = [ours(start), ours(skew)]
    dyn = MelchionnaNPT(systems, DT, temperature_K=80.0, externalstress=0.0, pfactor=PFACTOR)
    with pytest.raises(ValueError, match="system 1: cell: NPT needs an upper or lower triangular cell"):
        dyn.run(1)


def test_edited_positions_between_runs_raise_as_in_ase():
    start = _start()
    mine = ours(start)
    dyn = MelchionnaNPT(mine, DT, temperature_K=80.0, externalstress=0.0, pfactor=PFACTOR)
    dyn.run(2)
    mine.positions[0] += 0.1
    with pytest.raises(NotImplementedError, match="modified the atoms"):
        dyn.run(2)
