"""IsotropicMTKNPT and MTKNPT against ASE's own classes (``ase.md.nose_hoover_chain``), and their engine."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.constraints import FixAtoms
from ase.md.nose_hoover_chain import MTKNPT as AseMTKNPT
from ase.md.nose_hoover_chain import IsotropicMTKNPT as AseIsotropicMTKNPT

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import MTKNPT as MTKEngine
from nvalchemi_ase.md import MTKNPT, IsotropicMTKNPT
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, ours, theirs, with_velocities
from tests.structures import argon_bulk
from tests.tolerances import ASE_MD_ATOL

DT = 2.0 * units.fs
STEPS = 40
PAIRS = {"isotropic": (IsotropicMTKNPT, AseIsotropicMTKNPT), "full": (MTKNPT, AseMTKNPT)}
PARAMETERS = {"temperature_K": 80.0, "pressure_au": 1e-4, "tdamp": 20 * units.fs, "pdamp": 100 * units.fs}


def _start(seed: int = 1, repeat: int = 2):
    atoms = with_velocities([argon_bulk(repeat, seed=seed)], seed=seed)[0]
    atoms.set_cell(atoms.cell @ np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 1.0]]), True)
    return atoms


def _assert_same(mine, reference, label):
    for name, a, b in (
        ("positions", mine.positions, reference.positions),
        ("momenta", mine.get_momenta(), reference.get_momenta()),
        ("cell", mine.cell[:], reference.cell[:]),
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=ASE_MD_ATOL, err_msg=f"{label} {name}")
    np.testing.assert_allclose(
        mine.get_potential_energy(), reference.get_potential_energy(), rtol=1e-10, err_msg=label
    )


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("chains", [{}, {"tchain": 1, "pchain": 4, "tloop": 2, "ploop": 3}])
def test_equals_ase_step_by_step(kind, chains):
    ours_class, ase_class = PAIRS[kind]
    start = _start()
    mine, reference = ours(start), theirs(start)
    dyn = ours_class(mine, DT, **PARAMETERS, **chains)
    ase_dyn = ase_class(reference, DT, **PARAMETERS, **chains)
    assert dyn.todict() == ase_dyn.todict()
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            _assert_same(mine, reference, f"{kind} step {step}")
            assert dyn.get_conserved_energy() == pytest.approx(ase_dyn.get_conserved_energy(), rel=1e-10)
    _assert_same(mine, reference, kind)
    assert not np.allclose(mine.cell[:], start.cell[:], rtol=0, atol=1e-3)  # the cell did move


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_a_ragged_list_with_per_system_values_gives_each_system_what_ase_gives_it_alone(kind):
    ours_class, ase_class = PAIRS[kind]
    systems = [_start(2), _start(3, repeat=1), _start(4)]
    values = {
        "temperature_K": [80.0, 60.0, 100.0],
        "pressure_au": [1e-4, -2e-4, 0.0],
        "tdamp": [20 * units.fs, 30 * units.fs, 25 * units.fs],
        "pdamp": [100 * units.fs, 150 * units.fs, 80 * units.fs],
    }
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    dyn = ours_class(mine, DT, **values)
    dyn.run(STEPS)
    conserved = dyn.get_conserved_energy()
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_dyn = ase_class(reference, DT, **{name: value[b] for name, value in values.items()})
        ase_dyn.run(STEPS)
        _assert_same(mine[b], reference, f"{kind} system {b}")
        assert conserved[b] == pytest.approx(ase_dyn.get_conserved_energy(), rel=1e-10)


def test_the_engine_runs_on_a_batch_in_the_stage_loop():
    """The engine class alone (dt in fs, damping times in fs) equals ASE's class system by system."""
    systems = [_start(5), _start(6, repeat=1)]
    batch = Batch.from_atoms(systems, dtype=torch.float64)
    engine = MTKEngine(
        LennardJones(**ARGON), dt=2.0, temperature=[80.0, 120.0], pressure=[1e-4, 3e-4],
        tdamp=20.0, pdamp=[100.0, 60.0], isotropic=False,
    )  # fmt: skip
    engine.run(batch, n_steps=20)
    positions, cells = batch.positions.numpy(), batch.cell.numpy()
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseMTKNPT(
            reference, DT, temperature_K=[80.0, 120.0][b], pressure_au=[1e-4, 3e-4][b],
            tdamp=20 * units.fs, pdamp=[100.0, 60.0][b] * units.fs,
        ).run(20)  # fmt: skip
        rows = slice(int(batch.ptr[b]), int(batch.ptr[b + 1]))
        np.testing.assert_allclose(positions[rows], reference.positions, rtol=0, atol=ASE_MD_ATOL)
        np.testing.assert_allclose(cells[b], reference.cell[:], rtol=0, atol=ASE_MD_ATOL)


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_constraints_raise_as_in_ase(kind):
    ours_class, ase_class = PAIRS[kind]
    start = _start()
    start.set_constraint(FixAtoms(indices=[0]))
    with pytest.raises(NotImplementedError, match="does not support constraints"):
        ase_class(theirs(start), DT, **PARAMETERS)
    with pytest.raises(NotImplementedError, match=r"atoms\[1\] has constraints"):
        ours_class([ours(_start()), ours(start)], DT, **PARAMETERS)


def test_an_engine_without_stress_is_refused():
    model = LennardJones(**ARGON)
    model.implemented_properties = ("energy", "forces")
    with pytest.raises(TypeError, match="does not implement stress"):
        MTKEngine(model, 1.0, temperature=10.0, pressure=0.0, tdamp=10.0, pdamp=100.0)
