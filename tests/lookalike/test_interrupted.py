"""Interrupted runs: the Atoms (and the engine's batch) hold the last completed step, and the counts agree."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, DynamicsStage
from nvalchemi_ase.md.verlet import VelocityVerlet
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import FIRE
from tests.lookalike.common import ARGON, ours
from tests.structures import argon_bulk


class Stop(Exception):
    """What a failing observer or hook raises."""


class RaiseAt:
    """An engine hook raising ``error`` at ``stage`` of the step whose ``step_count`` is ``step``."""

    frequency = 1

    def __init__(self, stage: DynamicsStage, step: int, error: type[BaseException]) -> None:
        self.stage, self.step, self.error = stage, step, error

    def __call__(self, ctx, stage):
        if ctx.step_count == self.step:
            raise self.error(f"at step {self.step}")


def _systems():
    systems = [ours(argon_bulk(1, seed=k)) for k in range(2)]
    for k, atoms in enumerate(systems):
        atoms.set_momenta(np.random.default_rng(k).normal(scale=0.3, size=(len(atoms), 3)))
    return systems


def _reference(make, steps: int, **run):
    systems = _systems()
    make(systems).run(steps=steps, **run)
    return systems


def _assert_state(systems, reference, md: bool = True):
    for atoms, expected in zip(systems, reference, strict=True):
        np.testing.assert_array_equal(atoms.positions, expected.positions)
        if md:
            np.testing.assert_array_equal(atoms.get_momenta(), expected.get_momenta())
        # the calculator's cached results are those of this state (no stale energy from the start)
        assert atoms.calc.get_property("energy", atoms, allow_calculation=False) == pytest.approx(
            expected.get_potential_energy(), rel=1e-12, abs=1e-14
        )
        np.testing.assert_allclose(
            atoms.calc.get_property("forces", atoms, allow_calculation=False),
            expected.get_forces(),
            rtol=1e-12,
            atol=1e-14,
        )


def _verlet(systems):
    return VelocityVerlet(systems, timestep=2 * units.fs)


def _fire(systems):
    return FIRE(systems, logfile=None)


@pytest.mark.parametrize("error", [Stop, KeyboardInterrupt])
def test_an_observer_raising_at_step_k_leaves_step_k(error):
    systems = _systems()
    dyn = _verlet(systems)

    def observer():
        if dyn.nsteps == 7:
            raise error

    dyn.attach(observer, interval=1)
    with pytest.raises(error):
        dyn.run(20)
    assert dyn.nsteps == 7 and dyn.engine.step_count == 7
    _assert_state(systems, _reference(_verlet, 7))
    dyn.observers.clear()
    dyn.run(13)  # goes on as if nothing happened
    assert dyn.nsteps == 20
    _assert_state(systems, _reference(_verlet, 20))


@pytest.mark.parametrize("error", [Stop, KeyboardInterrupt])
@pytest.mark.parametrize("stage", [DynamicsStage.AFTER_COMPUTE, DynamicsStage.AFTER_POST_UPDATE])
def test_an_interrupt_midway_through_a_step_without_observers_leaves_the_last_completed_step(error, stage):
    """The 20,000-step case: no observer ever refreshed the Atoms, Ctrl-C lands inside a step."""
    systems = _systems()
    dyn = _verlet(systems)
    hook = RaiseAt(stage, 11, error)
    dyn.engine.register_hook(hook)  # inside the twelfth step
    with pytest.raises(error):
        dyn.run(30)
    assert dyn.nsteps == 11 and dyn.engine.step_count == 11
    _assert_state(systems, _reference(_verlet, 11))
    after = dyn.systems.batch.to_atoms()  # the engine's batch is at step 11 too
    np.testing.assert_array_equal(
        np.concatenate([a.positions for a in after]), np.concatenate([a.positions for a in systems])
    )
    hook.step = -1  # disarmed: the rerun redoes the twelfth step
    dyn.run(19)
    _assert_state(systems, _reference(_verlet, 30))


def test_irun_interrupted_leaves_the_last_completed_step():
    systems = _systems()
    dyn = _verlet(systems)
    dyn.engine.register_hook(RaiseAt(DynamicsStage.AFTER_COMPUTE, 4, KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        for _ in dyn.irun(10):
            pass
    assert dyn.nsteps == 4
    _assert_state(systems, _reference(_verlet, 4))


def test_an_optimizer_interrupted_leaves_the_last_completed_step():
    systems = _systems()
    dyn = _fire(systems)
    dyn.engine.register_hook(RaiseAt(DynamicsStage.AFTER_COMPUTE, 5, KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        dyn.run(fmax=1e-6, steps=50)
    assert dyn.nsteps == 5 and dyn.engine.step_count == 5
    _assert_state(systems, _reference(_fire, 5, fmax=1e-6), md=False)


def test_engine_batch_after_an_interrupted_run_is_the_last_completed_step():
    model = LennardJones(**ARGON)
    start = Batch.from_atoms([argon_bulk(2, seed=k) for k in range(2)], device="cpu")
    reference = NVE(model, dt=2.0).run(start.clone(), n_steps=6)
    batch = start.clone()
    engine = NVE(model, dt=2.0, hooks=[RaiseAt(DynamicsStage.AFTER_COMPUTE, 6, KeyboardInterrupt)])
    with pytest.raises(KeyboardInterrupt):
        engine.run(batch, n_steps=20)
    assert engine.step_count == 6
    for name in ("positions", "velocities", "forces", "energy"):
        assert getattr(batch, name).equal(getattr(reference, name)), name
    for got, expected in zip(batch.to_atoms(), reference.to_atoms(), strict=True):
        np.testing.assert_array_equal(got.positions, expected.positions)
        assert got.get_potential_energy() == expected.get_potential_energy()


def test_a_hook_raising_after_the_step_counts_it_so_a_rerun_logs_no_step_twice():
    logged = []

    class Log:
        stage = DynamicsStage.AFTER_STEP
        frequency = 1

        def __call__(self, ctx, stage):
            logged.append(ctx.step_count)

    batch = Batch.from_atoms(argon_bulk(1), device="cpu")
    engine = NVE(LennardJones(**ARGON), dt=2.0, hooks=[Log(), RaiseAt(DynamicsStage.AFTER_STEP, 3, Stop)])
    with pytest.raises(Stop):
        engine.run(batch, n_steps=10)
    assert engine.step_count == 4  # steps 0..3 are done; step 3 was logged
    engine.run(batch, n_steps=3)
    assert logged == [0, 1, 2, 3, 4, 5, 6]


def test_the_same_atoms_twice_in_a_list_is_refused_naming_both():
    atoms = ours(argon_bulk(1))
    other = ours(argon_bulk(1, seed=3))
    with pytest.raises(ValueError, match=r"atoms\[0\] and atoms\[2\] are the same Atoms object"):
        VelocityVerlet([atoms, other, atoms], timestep=units.fs)
    with pytest.raises(ValueError, match=r"atoms\[1\] and atoms\[2\]"):
        FIRE([atoms, other, other], logfile=None)
    assert Batch.from_atoms([atoms, atoms]).num_graphs == 2  # a batch only reads them: replicas are fine


class PoisonAt:
    """An engine hook that sets one atom of system 1 to NaN before step ``step`` (a run diverging)."""

    stage = DynamicsStage.BEFORE_STEP
    frequency = 1

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, ctx, stage):
        if ctx.step_count == self.step:
            positions = ctx.batch.positions.clone()
            positions[int(ctx.batch.ptr[1])] = float("nan")
            ctx.batch.positions = positions


@pytest.mark.parametrize("logfile", [True, False])
def test_a_system_going_nan_is_named_by_its_index(tmp_path, logfile):
    from nvalchemi_ase.hooks.safety import NonFiniteError

    systems = _systems()
    before = [atoms.positions.copy() for atoms in systems]
    dyn = VelocityVerlet(systems, timestep=2 * units.fs, logfile=tmp_path / "md.log" if logfile else None)
    dyn.engine.register_hook(PoisonAt(3))
    with pytest.raises(NonFiniteError, match=r"system 1 \(atoms\[1\]\): non-finite positions"):
        dyn.run(10)
    assert np.isfinite(systems[1].positions).all()  # never written into the Atoms
    assert not np.array_equal(systems[0].positions, before[0])


def test_edits_between_runs_that_cannot_be_taken_are_named():
    from nvalchemi_ase.data import BatchValidationError

    systems = _systems()
    dyn = _verlet(systems)
    dyn.run(2)
    systems[1].positions[2, 1] = np.nan
    with pytest.raises(BatchValidationError, match=r"system 1, field 'positions'"):
        dyn.run(2)
    systems[1].positions[2, 1] = 0.0
    del systems[1][0]
    with pytest.raises(ValueError, match=r"atoms\[1\] has 3 atoms, it had 4 .* added or deleted"):
        dyn.run(2)


def test_the_calculator_of_one_atoms_does_not_name_a_system():
    from nvalchemi_ase.data import BatchValidationError

    atoms = _systems()[1]
    atoms.positions[0, 0] = np.inf
    with pytest.raises(BatchValidationError) as error:
        atoms.get_potential_energy()
    assert "system" not in str(error.value) and error.value.field == "positions"
