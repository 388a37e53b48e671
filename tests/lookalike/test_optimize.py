"""nvalchemi_ase.optimize.FIRE against ase.optimize.FIRE in the same script."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from ase.io import read
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import FIRE
from tests.lookalike.common import ARGON, CountingCalculator, assert_same_state, ours, theirs
from tests.structures import argon_bulk, ragged_systems


def _systems():
    """Ragged systems that converge after different numbers of steps."""
    return [
        argon_bulk(2, seed=0, rattle=0.25),
        argon_bulk(1, seed=1, rattle=0.2),
        *ragged_systems(seed=2)[1:4],
    ]


def _calc():
    return BatchedCalculator(LennardJones(**ARGON), device="cpu")


def test_fire_equals_ase_step_by_step():
    atoms = argon_bulk(2, seed=3, rattle=0.25)
    mine, reference = ours(atoms), theirs(atoms)
    params = {"dt": 0.05, "maxstep": 0.1, "Nmin": 3, "a": 0.2}
    steps = zip(
        FIRE(mine, logfile=None, **params).irun(fmax=1e-6, steps=120),
        AseFIRE(reference, logfile=None, **params).irun(fmax=1e-6, steps=120),
        strict=True,
    )
    for step, (converged, ase_converged) in enumerate(steps):
        assert converged == ase_converged
        assert_same_state(mine, reference, f"step {step}", momenta=False)


def test_a_list_stops_each_system_where_ase_stops_it(tmp_path):
    systems, calc = _systems(), _calc()
    mine = [ours(atoms, calc) for atoms in systems]
    opt = FIRE(mine, logfile=str(tmp_path / "fire.log"), trajectory=str(tmp_path / "fire.traj"))
    converged = opt.run(fmax=0.02, steps=400)
    assert converged and isinstance(converged, np.bool_)
    ase_steps = []
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_opt = AseFIRE(
            reference, logfile=str(tmp_path / f"ase_{b}.log"), trajectory=str(tmp_path / f"ase_{b}.traj")
        )
        assert ase_opt.run(fmax=0.02, steps=400)
        ase_steps.append(ase_opt.nsteps)
        assert_same_state(mine[b], reference, f"system {b}", momenta=False)
        frames, ase_frames = read(tmp_path / f"fire_{b}.traj", ":"), read(tmp_path / f"ase_{b}.traj", ":")
        assert len(frames) == len(ase_frames) == ase_opt.nsteps + 1
        assert_same_state(frames[-1], ase_frames[-1], momenta=False)
        ours_log = (tmp_path / f"fire_{b}.log").read_text().splitlines()
        ase_log = (tmp_path / f"ase_{b}.log").read_text().splitlines()
        assert [_without_clock(line) for line in ours_log] == [_without_clock(line) for line in ase_log]
    assert len(set(ase_steps)) > 1, "the systems should converge at different steps"
    assert opt.nsteps == max(ase_steps)


def _without_clock(line: str) -> str:
    return re.sub(r"\d\d:\d\d:\d\d", "hh:mm:ss", line)


def test_return_values_yield_counts_and_step_counts_equal_ase():
    atoms = argon_bulk(1, seed=4, rattle=0.2)
    for make, fire in ((lambda a: ours(a), FIRE), (theirs, AseFIRE)):
        opt = fire(make(atoms), logfile=None)
        outcome = opt.run(fmax=1e-6, steps=3)
        assert not outcome and isinstance(outcome, np.bool_)
        assert len(list(opt.irun(fmax=1e-6, steps=4))) == 5  # steps + 1 yields when not converging
        assert (opt.nsteps, opt.max_steps) == (7, 7)
        assert opt.run(fmax=0.05, steps=200)
        converged_at = opt.nsteps
        assert opt.run(fmax=0.05, steps=10)  # already converged: no step
        assert opt.nsteps == converged_at
        assert opt.run(fmax=0.01)  # tighter: goes on from where it is
        if fire is FIRE:
            ours_counts, ours_todict = (converged_at, opt.nsteps), opt.todict()
    assert (converged_at, opt.nsteps) == ours_counts
    assert opt.todict() == ours_todict


def test_already_converged_writes_one_frame_and_returns_true(tmp_path):
    atoms = ours(argon_bulk(1, rattle=0.0))
    opt = FIRE(atoms, logfile=None, trajectory=tmp_path / "x.traj")
    assert opt.run(fmax=0.05) and opt.nsteps == 0
    assert len(read(tmp_path / "x.traj", ":")) == 1


def test_log_lines_equal_ase_and_stream_blocks(capsys):
    atoms = argon_bulk(1, seed=5, rattle=0.2)
    FIRE(ours(atoms)).run(fmax=0.05, steps=5)  # logfile='-' by default, as ASE
    mine = capsys.readouterr().out
    AseFIRE(theirs(atoms)).run(fmax=0.05, steps=5)
    reference = capsys.readouterr().out
    assert _without_clock(mine) == _without_clock(reference)
    assert len(mine.splitlines()) == 7
    stream, calc = io.StringIO(), _calc()
    FIRE([ours(a, calc) for a in _systems()[:3]], logfile=stream).run(fmax=0.05, steps=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 3 * 3
    assert lines[1].startswith("FIRE[0]:    0 ") and lines[3].startswith("FIRE[2]:    0 ")


def test_observers_and_optimizer_state_as_ase():
    CountingCalculator.calls = 0
    atoms = argon_bulk(2, seed=6, rattle=0.2)
    mine = ours(atoms, CountingCalculator(LennardJones(**ARGON), device="cpu"))
    records = {"ours": [], "ase": []}
    for label, target, fire in (("ours", mine, FIRE), ("ase", theirs(atoms), AseFIRE)):
        opt = fire(target, logfile=None)
        opt.attach(
            lambda t=target, o=opt, r=records[label]: r.append((o.nsteps, t.get_potential_energy())), 2
        )
        opt.run(fmax=0.05, steps=9)
    assert [r[0] for r in records["ours"]] == [r[0] for r in records["ase"]] == [0, 2, 4, 6, 8]
    np.testing.assert_allclose([r[1] for r in records["ours"]], [r[1] for r in records["ase"]], rtol=1e-10)
    assert CountingCalculator.calls == 0


def test_restart_files_are_ases(tmp_path):
    atoms = argon_bulk(2, seed=7, rattle=0.25)
    mine, reference = ours(atoms), theirs(atoms)
    for target, fire, name in ((mine, FIRE, "ours"), (reference, AseFIRE, "ase")):
        fire(target, restart=tmp_path / f"{name}.json", logfile=None).run(fmax=1e-6, steps=6)
        fire(target, restart=tmp_path / f"{name}.json", logfile=None).run(fmax=1e-6, steps=6)
    assert_same_state(mine, reference, momenta=False)
    with AseFIRE(theirs(atoms), restart=tmp_path / "ours.json", logfile=None) as ase_reads_ours:
        np.testing.assert_allclose(
            ase_reads_ours.vel, AseFIRE(reference, restart=tmp_path / "ase.json").vel, atol=1e-10
        )


def test_asesque_arguments():
    atoms = ours(argon_bulk(1))
    with pytest.warns(FutureWarning, match="maxmove"):
        opt = FIRE(atoms, logfile=None, maxmove=0.1)
    assert opt.maxstep == 0.1
    assert FIRE(atoms, logfile=None).todict() == AseFIRE(theirs(argon_bulk(1)), logfile=None).todict()


def test_appending_to_a_trajectory_skips_step_zero_as_ase(tmp_path):
    atoms = argon_bulk(1, seed=8, rattle=0.2)
    counts = []
    for target, fire, name in ((ours(atoms), FIRE, "ours"), (theirs(atoms), AseFIRE, "ase")):
        path = tmp_path / f"{name}.traj"
        seen = []
        fire(target, logfile=None, trajectory=path).run(fmax=1e-6, steps=3)
        opt = fire(target, logfile=None, trajectory=path, append_trajectory=True)
        opt.attach(lambda o=opt, s=seen: s.append(o.nsteps))
        opt.run(fmax=1e-6, steps=3)
        counts.append((len(read(path, ":")), seen))
    assert counts[0] == counts[1] == (7, [1, 2, 3])
