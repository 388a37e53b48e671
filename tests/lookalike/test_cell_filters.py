"""ASE's cell filters handed to the optimizer look-alikes, against ASE's own optimizers step by step."""

from __future__ import annotations

import warnings

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms
from ase.filters import ExpCellFilter, Filter, FrechetCellFilter, StrainFilter, UnitCellFilter
from ase.optimize import BFGS as AseBFGS
from ase.optimize import FIRE as AseFIRE
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import MDMin as AseMDMin
from ase.units import GPa

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import VelocityVerlet
from nvalchemi_ase.models import EMT
from nvalchemi_ase.optimize import BFGS, FIRE, LBFGS, MDMin
from tests.lookalike.common import ours, theirs
from tests.structures import argon_bulk

OPTIMIZERS = {
    "FIRE": (FIRE, AseFIRE),
    "BFGS": (BFGS, AseBFGS),
    "LBFGS": (LBFGS, AseLBFGS),
    "MDMin": (MDMin, AseMDMin),
}
FILTERS = {
    "frechet": (FrechetCellFilter, {"scalar_pressure": 0.5 * GPa}),
    "unit": (UnitCellFilter, {"mask": [1, 1, 1, 0, 1, 1]}),
    "exp": (ExpCellFilter, {"hydrostatic_strain": True}),
    "strain": (StrainFilter, {}),
}
CELL_ATOL = 1e-10
"""Å (positions, cell) and eV (energy), step by step over a few tens of steps."""


def strained_copper(seed: int, size=(2, 1, 1), fixed: bool = False):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(size)
    atoms.rattle(0.04, seed=seed)
    strain = np.eye(3) + 0.03 * np.random.default_rng(seed).standard_normal((3, 3))
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    if fixed:
        atoms.set_constraint(FixAtoms([0]))
    return atoms


def _filter(name: str, atoms):
    cls, options = FILTERS[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # ExpCellFilter's
        return cls(atoms, **options)


def _assert_same(mine, reference, label: str) -> None:
    np.testing.assert_allclose(mine.positions, reference.positions, rtol=0, atol=CELL_ATOL, err_msg=label)
    np.testing.assert_allclose(mine.cell.array, reference.cell.array, rtol=0, atol=CELL_ATOL, err_msg=label)
    energy, expected = mine.get_potential_energy(), reference.get_potential_energy()
    assert energy == pytest.approx(expected, abs=CELL_ATOL), label


def _lockstep(mine_opt, ase_opts, mine, references, steps: int, label: str) -> None:
    runs = [opt.irun(fmax=1e-5, steps=steps) for opt in ase_opts]
    for step, converged in enumerate(mine_opt.irun(fmax=1e-5, steps=steps)):
        ase_converged = [next(run, True) for run in runs]
        assert bool(converged) == all(ase_converged), f"{label} step {step}"
        for b, (a, r) in enumerate(zip(mine, references, strict=True)):
            _assert_same(a, r, f"{label} system {b} step {step}")


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("kind", sorted(FILTERS))
def test_each_filter_and_optimizer_equal_ase_on_a_ragged_list(optimizer: str, kind: str) -> None:
    ours_class, ase_class = OPTIMIZERS[optimizer]
    shapes = [((1, 1, 1), False), ((2, 1, 1), True), ((2, 2, 1), False)]
    mine = [strained_copper(k, size, fixed) for k, (size, fixed) in enumerate(shapes)]
    references = [a.copy() for a in mine]
    calc = BatchedCalculator(EMT(), device="cpu")
    for a, r in zip(mine, references, strict=True):
        a.calc, r.calc = calc, AseEMT()
    opt = ours_class([_filter(kind, a) for a in mine], logfile=None)
    ase_opts = [ase_class(_filter(kind, r), logfile=None) for r in references]
    _lockstep(opt, ase_opts, mine, references, 12, f"{optimizer}/{kind}")


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_one_filter_on_lj_argon_under_pressure_equals_ase(optimizer: str) -> None:
    ours_class, ase_class = OPTIMIZERS[optimizer]
    atoms = argon_bulk(2, seed=4, rattle=0.1)
    mine, reference = ours(atoms), theirs(atoms)
    opt = ours_class(UnitCellFilter(mine, scalar_pressure=0.2 * GPa), logfile=None)
    ase_opt = ase_class(UnitCellFilter(reference, scalar_pressure=0.2 * GPa), logfile=None)
    _lockstep(opt, [ase_opt], [mine], [reference], 20, optimizer)


def test_options_per_system_in_one_list() -> None:
    systems = [strained_copper(k) for k in range(3)]
    options = [
        (FrechetCellFilter, {"exp_cell_factor": 3.0, "constant_volume": True}),
        (UnitCellFilter, {"cell_factor": 5.0, "scalar_pressure": -0.2 * GPa}),
        (FrechetCellFilter, {"mask": np.diag([1, 0, 1]), "hydrostatic_strain": False}),
    ]
    mine, references = [a.copy() for a in systems], [a.copy() for a in systems]
    for a, r in zip(mine, references, strict=True):
        a.calc, r.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    opt = FIRE([cls(a, **kw) for a, (cls, kw) in zip(mine, options, strict=True)], logfile=None)
    ase_opts = [AseFIRE(cls(r, **kw), logfile=None) for r, (cls, kw) in zip(references, options, strict=True)]
    _lockstep(opt, ase_opts, mine, references, 15, "mixed")


def test_a_strained_cell_relaxes_to_the_lattice_constant_of_an_ase_energy_scan() -> None:
    lattice = np.linspace(3.55, 3.65, 41)
    energies = []
    for a in lattice:
        atoms = bulk("Cu", "fcc", a=a)
        atoms.calc = AseEMT()
        energies.append(atoms.get_potential_energy())
    coefficients = np.polyfit(lattice, energies, 4)
    fine = np.linspace(lattice[0], lattice[-1], 100001)
    expected = fine[np.argmin(np.polyval(coefficients, fine))]

    atoms = bulk("Cu", "fcc", a=3.75)
    atoms.calc = BatchedCalculator(EMT(), device="cpu")
    assert BFGS(FrechetCellFilter(atoms), logfile=None).run(fmax=1e-6, steps=200)
    relaxed = (4.0 * atoms.get_volume()) ** (1.0 / 3.0)
    assert relaxed == pytest.approx(expected, abs=1e-5)


def test_log_and_trajectory_are_ases(tmp_path) -> None:
    mine, reference = strained_copper(1), strained_copper(1)
    mine.calc, reference.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    kwargs = {"scalar_pressure": 0.3 * GPa}
    FIRE(
        FrechetCellFilter(mine, **kwargs),
        logfile=tmp_path / "ours.log",
        trajectory=str(tmp_path / "ours.traj"),
    ).run(fmax=0.05, steps=8)
    ase_opt = AseFIRE(
        FrechetCellFilter(reference, **kwargs),
        logfile=str(tmp_path / "ase.log"),
        trajectory=str(tmp_path / "ase.traj"),
    )
    ase_opt.run(fmax=0.05, steps=8)
    rows = [line.split()[3:] for line in (tmp_path / "ours.log").read_text().splitlines()[1:]]
    ase_rows = [line.split()[3:] for line in (tmp_path / "ase.log").read_text().splitlines()[1:]]
    assert rows == ase_rows  # energy E + pV and the (n + 3)-row fmax
    frames, ase_frames = ase.io.read(tmp_path / "ours.traj", ":"), ase.io.read(tmp_path / "ase.traj", ":")
    assert len(frames) == len(ase_frames)
    for frame, ase_frame in zip(frames, ase_frames, strict=True):
        np.testing.assert_allclose(frame.cell.array, ase_frame.cell.array, atol=CELL_ATOL)
        np.testing.assert_allclose(frame.get_stress(), ase_frame.get_stress(), atol=CELL_ATOL)


def test_strain_filter_keeps_its_strain_current() -> None:
    mine, reference = strained_copper(2), strained_copper(2)
    mine.calc, reference.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    ours_filter, ase_filter = StrainFilter(mine), StrainFilter(reference)
    MDMin(ours_filter, logfile=None).run(fmax=0.01, steps=5)
    AseMDMin(ase_filter, logfile=None).run(fmax=0.01, steps=5)
    np.testing.assert_allclose(ours_filter.strain, ase_filter.strain, atol=CELL_ATOL)


def test_unsupported_uses_are_refused() -> None:
    atoms = strained_copper(0)
    atoms.calc = BatchedCalculator(EMT(), device="cpu")
    with pytest.raises(TypeError, match=r"atoms\[0\] is a Filter"):
        FIRE(Filter(atoms, indices=[0]), logfile=None)
    with pytest.raises(TypeError, match=r"atoms\[0\] is a FrechetCellFilter, not ase.Atoms"):
        VelocityVerlet(FrechetCellFilter(atoms), timestep=1.0)
    with pytest.raises(NotImplementedError, match="downhill_check"):
        FIRE(FrechetCellFilter(atoms), logfile=None, downhill_check=True)
    with pytest.raises(NotImplementedError, match="use_line_search"):
        LBFGS(FrechetCellFilter(atoms), logfile=None, use_line_search=True)
