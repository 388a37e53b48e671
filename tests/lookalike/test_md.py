"""nvalchemi_ase.md against ase.md in the same script: numbers, observers, loops, files."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from ase import units
from ase.io import read
from ase.md.langevin import Langevin as AseLangevin
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import Langevin, VelocityVerlet
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import (
    ARGON,
    CountingCalculator,
    assert_same_state,
    ours,
    theirs,
    with_velocities,
)
from tests.structures import argon_bulk, ragged_systems

DT = 2.0 * units.fs


def _pair(atoms):
    return ours(atoms), theirs(atoms)


def test_velocity_verlet_equals_ase_step_by_step():
    mine, reference = _pair(with_velocities([argon_bulk(2)])[0])
    ours_steps = VelocityVerlet(mine, DT).irun(100)
    ase_steps = AseVelocityVerlet(reference, DT).irun(100)
    for step, (a, b) in enumerate(zip(ours_steps, ase_steps, strict=True)):
        assert a == b
        if step % 10 == 0:  # the Atoms are current at every yield of irun
            assert_same_state(mine, reference, f"step {step}")
    assert_same_state(mine, reference)


def test_a_list_gives_each_system_what_ase_gives_it_alone():
    systems = with_velocities(ragged_systems(), seed=1)
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    dyn = VelocityVerlet(mine, DT)
    assert dyn.run(120) is True
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseVelocityVerlet(reference, DT).run(120)
        assert_same_state(mine[b], reference, f"system {b}")
    assert dyn.masses.shape == (sum(len(a) for a in systems), 1)


@pytest.mark.parametrize("fixcm", [False, True])
def test_langevin_equals_ase_given_the_same_rng(fixcm):
    mine, reference = _pair(with_velocities([argon_bulk(2)], seed=2)[0])
    params = {"temperature_K": 120.0, "friction": 0.02 / units.fs, "fixcm": fixcm}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dyn = Langevin(mine, DT, rng=np.random.default_rng(7), **params)
        ase_dyn = AseLangevin(reference, DT, rng=np.random.default_rng(7), **params)
    kinds = [(w.category, str(w.message)) for w in caught]
    assert kinds[: len(kinds) // 2] == kinds[len(kinds) // 2 :]  # ASE's warnings, and only those
    assert len(kinds) == (2 if fixcm else 0)
    assert dyn.todict() == ase_dyn.todict()
    for step, _ in enumerate(zip(dyn.irun(100), ase_dyn.irun(100), strict=True)):
        if step % 50 == 0:
            assert_same_state(mine, reference, f"step {step}")
    assert_same_state(mine, reference)


def test_langevin_list_with_one_rng_and_temperature_per_system():
    systems = [argon_bulk(1, seed=k) for k in range(2)] + [argon_bulk(2, seed=5)]
    temperatures, frictions = [50.0, 120.0, 300.0], [0.01, 0.02, 0.005]
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    Langevin(
        mine,
        DT,
        temperature_K=temperatures,
        friction=[f / units.fs for f in frictions],
        fixcm=False,
        rng=[np.random.default_rng(10 + b) for b in range(3)],
    ).run(100)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseLangevin(
            reference,
            DT,
            temperature_K=temperatures[b],
            friction=frictions[b] / units.fs,
            fixcm=False,
            rng=np.random.default_rng(10 + b),
        ).run(100)
        assert_same_state(mine[b], reference, f"system {b}")


def test_langevin_legacy_arguments_behave_as_ase():
    atoms = ours(argon_bulk(1))
    with pytest.warns(FutureWarning, match="temperature_K"):  # ASE's warning for the eV slot
        dyn = Langevin(atoms, DT, 300 * units.kB, 0.01, fixcm=False)
    assert dyn.todict()["temperature_K"] == pytest.approx(300.0)
    with pytest.raises(TypeError, match="friction"):
        Langevin(atoms, DT, temperature_K=300, fixcm=False)
    with pytest.raises(TypeError, match="Exactly one"):
        Langevin(atoms, DT, 0.02, 0.01, fixcm=False, temperature_K=300)
    dyn = Langevin(atoms, DT, temperature_K=300, friction=0.01, fixcm=False)
    dyn.set_temperature(temperature_K=100)
    dyn.set_friction(0.02)
    dyn.set_timestep(1.0 * units.fs)
    assert dyn.todict() == {
        "type": "molecular-dynamics",
        "md-type": "Langevin",
        "timestep": 1.0 * units.fs,
        "temperature_K": pytest.approx(100.0),
        "friction": 0.02,
        "fixcm": False,
    }


def _record(dyn, atoms, log):
    def observe(tag):
        log.append((tag, dyn.nsteps, atoms.get_potential_energy(), atoms.get_forces()[0, 0]))

    for tag, interval in (("every", 1), ("third", 3), ("only4", -4), ("only0", 0)):
        dyn.attach(observe, interval, tag)


def test_observer_steps_counts_and_values_equal_ase():
    CountingCalculator.calls = 0
    start = with_velocities([argon_bulk(2)], seed=3)[0]
    mine, reference = ours(start, CountingCalculator(LennardJones(**ARGON), device="cpu")), theirs(start)
    records = {"ours": [], "ase": []}
    dyn, ase_dyn = VelocityVerlet(mine, DT), AseVelocityVerlet(reference, DT)
    _record(dyn, mine, records["ours"])
    _record(ase_dyn, reference, records["ase"])
    for d in (dyn, ase_dyn):
        assert d.run(5) is True
        assert len(list(d.irun(4))) == 5  # steps + 1 yields
        assert d.run(0) is True
        assert (d.nsteps, d.max_steps) == (9, 9)
    assert [r[:2] for r in records["ours"]] == [r[:2] for r in records["ase"]]
    np.testing.assert_allclose(
        [r[2:] for r in records["ours"]], [r[2:] for r in records["ase"]], rtol=1e-10, atol=1e-12
    )
    assert dyn.get_time() == pytest.approx(ase_dyn.get_time())
    assert dyn.todict() == ase_dyn.todict()
    assert CountingCalculator.calls == 0  # observers read the cached results, never recompute


def test_observer_edits_reach_the_device():
    mine, reference = _pair(with_velocities([argon_bulk(2)], seed=4)[0])
    for atoms, cls in ((mine, VelocityVerlet), (reference, AseVelocityVerlet)):
        dyn = cls(atoms, DT)
        dyn.attach(Stationary, 5, atoms)  # changes momenta
        dyn.attach(lambda a=atoms: a.set_positions(a.positions * 1.0005), -7)  # and positions once
        dyn.run(20)
        atoms.set_momenta(atoms.get_momenta() * 0.5)  # edited between runs
        dyn.run(10)
    assert_same_state(mine, reference)


def test_trajectory_frames_equal_ase(tmp_path):
    start = with_velocities([argon_bulk(2)], seed=5)[0]
    mine, reference = _pair(start)
    for atoms, cls, name in ((mine, VelocityVerlet, "ours"), (reference, AseVelocityVerlet, "ase")):
        with cls(atoms, DT, trajectory=str(tmp_path / f"{name}.traj"), loginterval=3) as dyn:
            dyn.run(10)
            dyn.run(5)
    frames, ase_frames = read(tmp_path / "ours.traj", ":"), read(tmp_path / "ase.traj", ":")
    assert len(frames) == len(ase_frames) == 6  # steps 0, 3, ..., 15
    for frame, ase_frame in zip(frames, ase_frames, strict=True):
        assert_same_state(frame, ase_frame)
        np.testing.assert_allclose(frame.get_forces(), ase_frame.get_forces(), rtol=0, atol=1e-10)
    from ase.io.trajectory import Trajectory

    with Trajectory(tmp_path / "ours.traj") as ours_traj, Trajectory(tmp_path / "ase.traj") as ase_traj:
        assert ours_traj.description == ase_traj.description


def test_one_trajectory_and_log_per_system(tmp_path):
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    systems = [ours(a, calc) for a in with_velocities([argon_bulk(1, seed=k) for k in range(3)])]
    VelocityVerlet(systems, DT, trajectory=str(tmp_path / "run_{}.traj"), logfile=tmp_path / "md.log").run(4)
    for b, atoms in enumerate(systems):
        frames = read(tmp_path / f"run_{b}.traj", ":")
        assert len(frames) == 5
        np.testing.assert_array_equal(frames[-1].positions, atoms.positions)
        assert len((tmp_path / f"md_{b}.log").read_text().splitlines()) == 6
    stream = io.StringIO()
    VelocityVerlet(systems, DT, logfile=stream, loginterval=2).run(4)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 3 * 3  # one header, then one line per system at steps 0, 2, 4
    assert lines[0].split() == ["Time[ps]", "Etot[eV]", "Epot[eV]", "Ekin[eV]", "T[K]"]


def test_md_log_equals_ase(tmp_path):
    start = with_velocities([argon_bulk(2)], seed=6)[0]
    mine, reference = _pair(start)
    for atoms, cls, name in ((mine, VelocityVerlet, "ours"), (reference, AseVelocityVerlet, "ase")):
        with cls(atoms, DT, logfile=str(tmp_path / f"{name}.log"), loginterval=2) as dyn:
            dyn.run(5)
            dyn.run(4)
    text = (tmp_path / "ours.log").read_text()
    assert text == (tmp_path / "ase.log").read_text()
    assert len(text.splitlines()) == 6  # header + steps 0, 2, 4, 6, 8


def test_append_trajectory_writes_step_zero_again_as_ase(tmp_path):
    start = with_velocities([argon_bulk(1)], seed=7)[0]
    counts = []
    for cls, atoms in ((VelocityVerlet, ours(start)), (AseVelocityVerlet, theirs(start))):
        path = tmp_path / f"{cls.__module__}.traj"
        cls(atoms, DT, trajectory=path).run(2)
        cls(atoms, DT, trajectory=path, append_trajectory=True).run(2)
        counts.append(len(read(path, ":")))
    assert counts[0] == counts[1] == 6


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="calculator"):
        VelocityVerlet(argon_bulk(1), DT)
    with pytest.raises(ValueError, match="empty"):
        VelocityVerlet([], DT)
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    other = BatchedCalculator(LennardJones(**{**ARGON, "epsilon": 0.02}), device="cpu")
    with pytest.raises(ValueError, match=r"atoms\[1\]"):
        VelocityVerlet([ours(argon_bulk(1), calc), ours(argon_bulk(1), other)], DT)
    with pytest.raises(ValueError, match="trajectory"):
        VelocityVerlet([ours(argon_bulk(1), calc), ours(argon_bulk(1), calc)], DT, trajectory=io.BytesIO())


def test_an_attached_trajectory_writer_gets_current_frames(tmp_path):
    from ase.io.trajectory import Trajectory

    start = with_velocities([argon_bulk(1)], seed=8)[0]
    for atoms, cls, name in (
        (ours(start), VelocityVerlet, "ours"),
        (theirs(start), AseVelocityVerlet, "ase"),
    ):
        with Trajectory(tmp_path / f"{name}.traj", "w", atoms) as traj:
            dyn = cls(atoms, DT)
            dyn.attach(traj, interval=2)  # not callable: its write() is called, as in ASE
            dyn.run(6)
    frames, ase_frames = read(tmp_path / "ours.traj", ":"), read(tmp_path / "ase.traj", ":")
    assert len(frames) == len(ase_frames) == 4
    for frame, ase_frame in zip(frames, ase_frames, strict=True):
        assert_same_state(frame, ase_frame)


def test_any_ase_calculator_works_through_the_adapter():
    from ase.build import bulk
    from ase.calculators.emt import EMT

    systems = [bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2), bulk("Cu", "fcc", a=3.65).repeat(3)]
    systems = with_velocities(systems, scale=0.02, seed=9)
    shared = EMT()
    mine = [atoms.copy() for atoms in systems]
    for atoms in mine:
        atoms.calc = shared  # one calculator for both: each system still gets its own cache
    dyn = VelocityVerlet(mine, DT)
    energies = []
    dyn.attach(lambda: energies.append([a.get_potential_energy() for a in mine]), interval=10)
    dyn.run(20)
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = EMT()
        ase_energies = []
        ase_dyn = AseVelocityVerlet(reference, DT)
        ase_dyn.attach(lambda r=reference, e=ase_energies: e.append(r.get_potential_energy()), interval=10)
        ase_dyn.run(20)
        assert_same_state(mine[b], reference, f"system {b}")
        np.testing.assert_allclose([row[b] for row in energies], ase_energies, rtol=1e-10)
    assert mine[0].calc.base is shared  # a shared ASE calculator is seen through a view per system
