"""LBFGS(use_line_search=True) and LBFGSLineSearch against ASE's own classes in the same script.

ASE's line search amplifies rounding: ASE against ASE with one coordinate
moved by 1e-14 Å drifts to ~1e-9 Å over 50 steps. The cases here (a few
to twenty steps) stay within the usual 1e-10 Å.
"""

from __future__ import annotations

import io
import re
import threading

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms, FixBondLengths
from ase.io import read
from ase.io.jsonio import read_json
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import LBFGSLineSearch as AseLBFGSLineSearch

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT, LennardJones
from nvalchemi_ase.optimize import LBFGS, LBFGSLineSearch
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FLOAT64_RTOL


def _systems() -> list[Atoms]:
    """32, 4 and 12 atoms; ASE's line-search LBFGS takes 17, 12 and 8 steps to fmax = 0.01."""
    return [argon_bulk(2, seed=0, rattle=0.2), argon_bulk(1, seed=1, rattle=0.3), ragged_systems(seed=2)[1]]


def _without_clock(text: str) -> list[str]:
    return [re.sub(r"\d\d:\d\d:\d\d", "hh:mm:ss", line) for line in text.splitlines()]


def _step_by_step(mine: Atoms, reference: Atoms, opt: LBFGS, ase_opt: AseLBFGS, fmax: float) -> int:
    """Both optimizers side by side: same convergence, state and counters after every step."""
    steps = zip(opt.irun(fmax=fmax, steps=40), ase_opt.irun(fmax=fmax, steps=40), strict=True)
    for step, (converged, ase_converged) in enumerate(steps):
        assert converged == ase_converged, f"step {step}"
        assert_same_state(mine, reference, f"step {step}", momenta=False)
        assert (opt.function_calls, opt.force_calls) == (ase_opt.function_calls, ase_opt.force_calls)
    assert converged
    return opt.nsteps


def test_one_system_equals_ase_step_by_step():
    atoms = argon_bulk(2, seed=0, rattle=0.2)
    mine, reference = ours(atoms), theirs(atoms)
    log, ase_log = io.StringIO(), io.StringIO()
    opt = LBFGS(mine, logfile=log, use_line_search=True)
    ase_opt = AseLBFGS(reference, logfile=ase_log, use_line_search=True)
    assert _step_by_step(mine, reference, opt, ase_opt, fmax=0.01) == ase_opt.nsteps == 17
    assert opt.force_calls > opt.nsteps  # the line search evaluated more than one point on some steps
    assert _without_clock(log.getvalue()) == _without_clock(ase_log.getvalue())


def test_emt_copper_and_lbfgs_line_search_class_equal_ase():
    copper = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    copper.rattle(0.1, seed=5)
    mine, reference = copper.copy(), copper.copy()
    mine.calc, reference.calc = BatchedCalculator(EMT(), device="cpu"), AseEMT()
    opt = LBFGSLineSearch(mine, logfile=None, maxstep=0.15, memory=4)
    ase_opt = AseLBFGSLineSearch(reference, logfile=None, maxstep=0.15, memory=4)
    assert _step_by_step(mine, reference, opt, ase_opt, fmax=0.01) == ase_opt.nsteps
    assert opt.todict() == ase_opt.todict()


def test_a_list_equals_ase_on_each_system_alone(tmp_path):
    systems = _systems()
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    opt = LBFGS(
        mine, logfile=str(tmp_path / "ours.log"), trajectory=str(tmp_path / "ours.traj"), use_line_search=True
    )
    assert opt.run(fmax=0.01, steps=100)
    ase_steps = []
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_opt = AseLBFGS(
            reference,
            logfile=str(tmp_path / f"ase_{b}.log"),
            trajectory=str(tmp_path / f"ase_{b}.traj"),
            use_line_search=True,
        )
        assert ase_opt.run(fmax=0.01, steps=100)
        ase_steps.append(ase_opt.nsteps)
        assert_same_state(mine[b], reference, f"system {b}", momenta=False)
        assert opt.function_calls[b] == ase_opt.function_calls
        assert opt.force_calls[b] == ase_opt.force_calls
        frames, ase_frames = read(tmp_path / f"ours_{b}.traj", ":"), read(tmp_path / f"ase_{b}.traj", ":")
        assert len(frames) == len(ase_frames) == ase_opt.nsteps + 1
        for frame, ase_frame in zip(frames, ase_frames, strict=True):
            assert_same_state(frame, ase_frame, f"system {b} frame", momenta=False)
        ours_log, ase_log = (tmp_path / f"ours_{b}.log").read_text(), (tmp_path / f"ase_{b}.log").read_text()
        assert _without_clock(ours_log) == _without_clock(ase_log)
    assert len(set(ase_steps)) == len(systems), "the systems should converge at different steps"
    assert opt.nsteps == max(ase_steps)


def test_run_returns_and_counts_as_ase():
    atoms = argon_bulk(1, seed=1, rattle=0.3)
    outcomes = []
    for make, cls in ((ours, LBFGS), (theirs, AseLBFGS)):
        opt = cls(make(atoms), logfile=None, use_line_search=True)
        first = opt.run(fmax=0.01, steps=3)
        nsteps = opt.nsteps
        second = opt.run(fmax=0.01, steps=100)
        outcomes.append((first, nsteps, second, opt.nsteps, opt.function_calls, opt.force_calls))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][:2] == (False, 3) and outcomes[0][2]
    assert isinstance(outcomes[0][0], np.bool_)


def test_fixed_atoms_equal_ase():
    atoms = argon_bulk(1, seed=1, rattle=0.3)
    atoms.set_constraint(FixAtoms([0, 2]))
    mine, reference = ours(atoms), theirs(atoms)
    opt = LBFGS(mine, logfile=None, use_line_search=True)
    ase_opt = AseLBFGS(reference, logfile=None, use_line_search=True)
    assert _step_by_step(mine, reference, opt, ase_opt, fmax=0.01) == ase_opt.nsteps
    np.testing.assert_array_equal(mine.positions[[0, 2]], atoms.positions[[0, 2]])


def test_counters_without_the_line_search_equal_ase():
    systems = [argon_bulk(1, seed=seed, rattle=0.3) for seed in range(2)]
    opt = LBFGS([ours(atoms) for atoms in systems], logfile=None)
    opt.run(fmax=0.01, steps=100)
    for b, atoms in enumerate(systems):
        ase_opt = AseLBFGS(theirs(atoms), logfile=None)
        ase_opt.run(fmax=0.01, steps=100)
        assert opt.function_calls[b] == opt.force_calls[b] == ase_opt.function_calls == ase_opt.force_calls


def test_restart_files_hold_ases_e0_and_continue_as_ase(tmp_path):
    atoms = argon_bulk(1, seed=1, rattle=0.3)
    mine, reference = ours(atoms), theirs(atoms)
    paths = {"ours": str(tmp_path / "ours.json"), "ase": str(tmp_path / "ase.json")}
    LBFGS(mine, restart=paths["ours"], logfile=None, use_line_search=True).run(0.01, 3)
    AseLBFGS(reference, restart=paths["ase"], logfile=None, use_line_search=True).run(0.01, 3)
    saved, ase_saved = _read_json(paths["ours"]), _read_json(paths["ase"])
    assert saved[0] == ase_saved[0] == 3 and saved[7] == ase_saved[7] == "START"
    np.testing.assert_allclose(saved[6], ase_saved[6], rtol=FLOAT64_RTOL)  # e0: energy at the step's start
    opt = LBFGS(mine, restart=paths["ours"], logfile=None, use_line_search=True)
    ase_opt = AseLBFGS(reference, restart=paths["ase"], logfile=None, use_line_search=True)
    assert opt.run(0.01, 100) and ase_opt.run(0.01, 100)
    counts = (opt.nsteps, opt.function_calls, opt.force_calls)
    assert counts == (ase_opt.nsteps, ase_opt.function_calls, ase_opt.force_calls)
    assert_same_state(mine, reference, momenta=False)


def _read_json(path):
    with open(path) as fd:
        return read_json(fd, always_array=False)


class _Uphill(Calculator):
    """A harmonic well whose forces point uphill: ASE's line search gives up on it."""

    implemented_properties = ("energy", "free_energy", "forces")
    fail_after: int | None = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        if self.fail_after is not None:
            self.fail_after -= 1
            if self.fail_after < 0:
                raise ValueError("the calculator broke")
        energy = 0.5 * float((self.atoms.positions**2).sum())
        self.results = {"energy": energy, "free_energy": energy, "forces": self.atoms.positions.copy()}


def _uphill_dimer() -> Atoms:
    atoms = Atoms("Ar2", positions=[[0.3, 0.0, 0.0], [0.0, 0.4, 0.1]])
    atoms.calc = _Uphill()
    return atoms


def test_a_failed_line_search_raises_as_ase_and_leaves_no_threads():
    threads = threading.active_count()
    outcomes = []
    for cls in (LBFGS, AseLBFGS):
        opt = cls(_uphill_dimer(), logfile=None, use_line_search=True)
        with pytest.raises(RuntimeError, match="LineSearch failed!"):
            opt.run(fmax=0.01, steps=10)
        outcomes.append((opt.nsteps, opt.function_calls, opt.force_calls))
    assert outcomes[0] == outcomes[1]
    good = theirs(argon_bulk(1, seed=1, rattle=0.3))
    opt = LBFGS([good, _uphill_dimer()], logfile=None, use_line_search=True)
    with pytest.raises(RuntimeError, match="LineSearch failed!"):
        opt.run(fmax=0.01, steps=10)
    assert threading.active_count() == threads


def test_a_calculator_error_during_the_search_stops_every_search():
    threads = threading.active_count()
    broken = _uphill_dimer()
    broken.calc.fail_after = 3  # the start, step 1's trial point, then one more evaluation
    opt = LBFGS([theirs(argon_bulk(1, seed=1, rattle=0.3)), broken], logfile=None, use_line_search=True)
    with pytest.raises(ValueError, match="the calculator broke"):
        opt.run(fmax=0.01, steps=10)
    assert threading.active_count() == threads


def test_constraints_applied_on_the_host_are_refused():
    atoms = ours(argon_bulk(1, seed=1, rattle=0.3))
    atoms.set_constraint(FixBondLengths([(0, 1)]))
    with pytest.raises(NotImplementedError, match="FixBondLengths"):
        LBFGS(atoms, logfile=None, use_line_search=True)
