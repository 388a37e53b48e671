"""NPTBerendsen and Inhomogeneous_NPTBerendsen against ASE's own classes (``ase.md.nptberendsen``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.constraints import FixAtoms
from ase.md.nptberendsen import Inhomogeneous_NPTBerendsen as AseInhomogeneous
from ase.md.nptberendsen import NPTBerendsen as AseNPTBerendsen

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NPTBerendsen as BerendsenEngine
from nvalchemi_ase.md.nptberendsen import Inhomogeneous_NPTBerendsen, NPTBerendsen
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, ours, theirs, with_velocities
from tests.structures import argon_bulk
from tests.tolerances import ASE_MD_ATOL

DT = 2.0 * units.fs
STEPS = 40
PAIRS = {
    "isotropic": (NPTBerendsen, AseNPTBerendsen),
    "inhomogeneous": (Inhomogeneous_NPTBerendsen, AseInhomogeneous),
}
PARAMETERS = {
    "temperature_K": 80.0, "pressure_au": 2e-3, "taut": 50 * units.fs, "taup": 200 * units.fs,
    "compressibility_au": 2.0,
}  # fmt: skip


def _start(seed: int = 1, repeat: int = 2, fixed: tuple[int, ...] = ()):
    atoms = argon_bulk(repeat, seed=seed)
    atoms.set_cell(atoms.cell @ np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 1.0]]), True)
    if fixed:
        atoms.set_constraint(FixAtoms(indices=list(fixed)))
    return with_velocities([atoms], seed=seed)[0]


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
@pytest.mark.parametrize("fixed", [(), (0, 5)])
def test_equals_ase_step_by_step(kind, fixed):
    ours_class, ase_class = PAIRS[kind]
    extra = {"mask": (1, 0, 1)} if kind == "inhomogeneous" else {}
    start = _start(fixed=fixed)
    mine, reference = ours(start), theirs(start)
    dyn = ours_class(mine, DT, **PARAMETERS, **extra)
    ase_dyn = ase_class(reference, DT, **PARAMETERS, **extra)
    assert dyn.todict() == ase_dyn.todict()
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            _assert_same(mine, reference, f"{kind} step {step}")
    _assert_same(mine, reference, kind)
    assert not np.allclose(mine.cell[:], start.cell[:], rtol=0, atol=1e-3)  # the cell did move
    if kind == "inhomogeneous":
        np.testing.assert_array_equal(mine.cell[1], start.cell[1])  # masked out


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_a_ragged_list_with_per_system_values_gives_each_system_what_ase_gives_it_alone(kind):
    ours_class, ase_class = PAIRS[kind]
    systems = [_start(2), _start(3, repeat=1), _start(4, fixed=(3,))]
    values = {
        "temperature_K": [80.0, 60.0, 100.0],
        "pressure_au": [2e-3, -1e-3, 0.0],
        "taut": [50 * units.fs, 30 * units.fs, 40 * units.fs],
        "taup": [200 * units.fs, 150 * units.fs, 300 * units.fs],
        "compressibility_au": [2.0, 1.0, 3.0],
    }
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    ours_class(mine, DT, **values).run(STEPS)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_class(reference, DT, **{name: value[b] for name, value in values.items()}).run(STEPS)
        _assert_same(mine[b], reference, f"{kind} system {b}")


def test_the_engine_runs_on_a_batch_in_the_stage_loop():
    systems = [_start(5), _start(6, repeat=1)]
    batch = Batch.from_atoms(systems, dtype=torch.float64)
    engine = BerendsenEngine(
        LennardJones(**ARGON), dt=2.0, temperature=[80.0, 120.0], taut=50.0, pressure=[2e-3, -1e-3],
        taup=[200.0, 100.0], compressibility=2.0, inhomogeneous=True,
    )  # fmt: skip
    engine.run(batch, n_steps=20)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseInhomogeneous(
            reference, DT, temperature_K=[80.0, 120.0][b], taut=50 * units.fs, pressure_au=[2e-3, -1e-3][b],
            taup=[200.0, 100.0][b] * units.fs, compressibility_au=2.0,
        ).run(20)  # fmt: skip
        rows = slice(int(batch.ptr[b]), int(batch.ptr[b + 1]))
        positions = batch.positions[rows].numpy()
        np.testing.assert_allclose(positions, reference.positions, rtol=0, atol=ASE_MD_ATOL)
        np.testing.assert_allclose(batch.cell[b].numpy(), reference.cell[:], rtol=0, atol=ASE_MD_ATOL)


def test_ase_argument_rules():
    start = _start()
    for kwargs in ({}, {"pressure": 1.0, "pressure_au": 1e-3}):
        with pytest.raises(TypeError, match="Exactly one of the parameters"):
            NPTBerendsen(ours(start), DT, temperature_K=80.0, compressibility_au=1.0, **kwargs)
    with pytest.raises(TypeError, match="Do not give both"):
        NPTBerendsen(
            ours(start), DT, temperature_K=80.0, pressure_au=0.0, compressibility=1.0, compressibility_au=1.0
        )
    with pytest.warns(FutureWarning, match="atomic units"):
        dyn = NPTBerendsen(ours(start), DT, temperature_K=80.0, pressure=1.0, compressibility=1e-6)
    with pytest.warns(FutureWarning, match="atomic units"):
        ase_dyn = AseNPTBerendsen(theirs(start), DT, temperature_K=80.0, pressure=1.0, compressibility=1e-6)
    assert dyn.get_pressure() == pytest.approx(ase_dyn.get_pressure(), rel=1e-15)
    assert dyn.get_compressibility() == pytest.approx(ase_dyn.get_compressibility(), rel=1e-15)
    dyn.set_taup(100 * units.fs)
    assert dyn.get_taup() == 100 * units.fs
