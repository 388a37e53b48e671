"""``FIRE(downhill_check=True, position_reset_callback=...)`` against ``ase.optimize.FIRE``, same script.

FIRE with a large step (``dt=0.5``, ``maxstep=0.5`` Å on Lennard-Jones argon)
jumps over valleys: ASE's run of these systems has uphill steps (its
``position_reset_callback`` fires), and ours must reset the same systems on
the same steps, to the same positions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.constraints import FixAtoms, Hookean
from ase.optimize import FIRE as AseFIRE
from ase.optimize.optimize import OptimizableAtoms

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE as FIREEngine
from nvalchemi_ase.dynamics import ConvergenceHook
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import FIRE
from tests.cuda import no_syncs
from tests.lookalike.common import ARGON, TRAJECTORY_ATOL, assert_same_state, ours, theirs
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FLOAT64_RTOL

BIG_STEPS = {"dt": 0.5, "maxstep": 0.5}
FMAX, STEPS = 1e-3, 50


def _systems() -> list[Atoms]:
    """Ragged systems; the first three go uphill at different steps, the first converges early."""
    return [
        argon_bulk(1, seed=0, rattle=0.4),
        argon_bulk(1, seed=2, rattle=0.4),
        argon_bulk(2, seed=1, rattle=0.5),
        ragged_systems(seed=2)[2],  # a 13-atom cluster
    ]


class Recorder:
    """A ``position_reset_callback`` that records ASE's arguments and the step (``opt.nsteps``)."""

    def __init__(self) -> None:
        self.opt: AseFIRE | FIRE | None = None
        self.calls: list[tuple] = []

    def __call__(self, optimizable: OptimizableAtoms, r_last: np.ndarray, e: float, e_last: float) -> None:
        assert self.opt is not None
        assert isinstance(optimizable, OptimizableAtoms)
        self.calls.append(
            (optimizable.atoms, self.opt.nsteps, optimizable.get_x().copy(), r_last.copy(), e, e_last)
        )


def _ase_run(atoms: Atoms, **params) -> tuple[Atoms, list[tuple]]:
    """ASE's FIRE with the downhill check on ``atoms`` alone: the final Atoms and the callback calls."""
    reference, recorder = theirs(atoms), Recorder()
    opt = AseFIRE(reference, logfile=None, downhill_check=True, position_reset_callback=recorder, **params)
    recorder.opt = opt
    opt.run(fmax=FMAX, steps=STEPS)
    return reference, recorder.calls


def _assert_same_calls(mine: list[tuple], reference: list[tuple], label: str) -> None:
    """The same steps, uphill positions, ``r_last``, ``e`` and ``e_last``."""
    assert [call[1] for call in mine] == [call[1] for call in reference], label
    for (_, step, x, r_last, e, e_last), (_, _, ase_x, ase_r_last, ase_e, ase_e_last) in zip(
        mine, reference, strict=True
    ):
        where = f"{label}, step {step}"
        assert r_last.shape == ase_r_last.shape and isinstance(e, float) and isinstance(e_last, float)
        np.testing.assert_allclose(x, ase_x, rtol=0, atol=TRAJECTORY_ATOL, err_msg=where)
        np.testing.assert_allclose(r_last, ase_r_last, rtol=0, atol=TRAJECTORY_ATOL, err_msg=where)
        np.testing.assert_allclose([e, e_last], [ase_e, ase_e_last], rtol=FLOAT64_RTOL, err_msg=where)
        assert e > e_last


def test_single_system_equals_ase_step_by_step():
    atoms = _systems()[0]
    mine, reference, counter = ours(atoms), theirs(atoms), []
    mine_steps = FIRE(mine, logfile=None, downhill_check=True, **BIG_STEPS).irun(fmax=FMAX, steps=STEPS)
    ase_opt = AseFIRE(
        reference,
        logfile=None,
        downhill_check=True,
        position_reset_callback=lambda *args: counter.append(ase_opt.nsteps),
        **BIG_STEPS,
    )
    for step, (converged, ase_converged) in enumerate(
        zip(mine_steps, ase_opt.irun(fmax=FMAX, steps=STEPS), strict=True)
    ):
        assert converged == ase_converged
        assert_same_state(mine, reference, f"step {step}", momenta=False)
    assert len(counter) >= 2, "ASE's run should go uphill"
    unchecked = theirs(atoms)
    AseFIRE(unchecked, logfile=None, **BIG_STEPS).run(fmax=FMAX, steps=STEPS)
    assert np.abs(unchecked.positions - reference.positions).max() > 1e-3  # the resets matter


def test_a_list_equals_ase_on_each_system_alone_with_the_same_callbacks():
    systems = _systems()
    references = [_ase_run(atoms, **BIG_STEPS) for atoms in systems]
    uphill_steps = [[call[1] for call in calls] for _, calls in references]
    assert sum(bool(steps) for steps in uphill_steps) >= 3, uphill_steps
    mine, recorder = [ours(atoms) for atoms in systems], Recorder()
    opt = FIRE(mine, logfile=None, downhill_check=True, position_reset_callback=recorder, **BIG_STEPS)
    recorder.opt = opt
    opt.run(fmax=FMAX, steps=STEPS)
    for b, (atoms, (reference, ase_calls)) in enumerate(zip(mine, references, strict=True)):
        assert_same_state(atoms, reference, f"system {b}", momenta=False)
        _assert_same_calls([call for call in recorder.calls if call[0] is atoms], ase_calls, f"system {b}")


def test_constraint_energy_terms_are_compared_as_ase():
    """A Hookean spring (host path) adds to the energy ASE compares; FixAtoms (device path) does not."""
    atoms = _systems()[0]
    atoms.set_constraint([FixAtoms([3]), Hookean(0, 1, k=0.05, rt=3.0)])
    reference, ase_calls = _ase_run(atoms, **BIG_STEPS)
    assert len(ase_calls) >= 2
    mine, recorder = ours(atoms), Recorder()
    opt = FIRE(mine, logfile=None, downhill_check=True, position_reset_callback=recorder, **BIG_STEPS)
    recorder.opt = opt
    opt.run(fmax=FMAX, steps=STEPS)
    assert_same_state(mine, reference, momenta=False)
    _assert_same_calls(recorder.calls, ase_calls, "hookean")


def test_what_the_callback_does_to_the_atoms_is_reset_as_ase():
    atoms = _systems()[0]
    results = []
    for make, fire in ((ours, FIRE), (theirs, AseFIRE)):
        target = make(atoms)

        def scribble(optimizable, r_last, e, e_last):
            optimizable.atoms.positions += 1.0
            optimizable.atoms.calc.reset()

        fire(target, logfile=None, downhill_check=True, position_reset_callback=scribble, **BIG_STEPS).run(
            fmax=FMAX, steps=STEPS
        )
        results.append(target)
    assert_same_state(*results, momenta=False)


def test_the_default_keeps_no_downhill_state():
    plain = FIRE(ours(_systems()[0]), logfile=None)
    plain.run(fmax=FMAX, steps=2)
    assert "fire_e_last" not in plain.systems.batch.field_names()
    assert plain.engine.state_fields == FIREEngine.state_fields
    checked = FIRE(ours(_systems()[0]), logfile=None, downhill_check=True)
    checked.run(fmax=FMAX, steps=2)
    assert {"fire_e_last", "fire_r_last"} <= set(checked.systems.batch.field_names())
    assert {"fire_e_last", "fire_r_last"} <= set(checked.engine.state_fields)


@pytest.mark.gpu
def test_downhill_steps_do_not_sync_on_cuda():
    batch = Batch.from_atoms(_systems()[:3], device="cuda")
    engine = FIREEngine(
        LennardJones(**ARGON),
        downhill_check=True,
        convergence_hook=ConvergenceHook.from_fmax(FMAX, frequency=1000),
        **BIG_STEPS,
    )
    engine.run(batch, n_steps=3)  # set-up (may sync)
    with no_syncs():
        for _ in range(20):
            engine.step(batch)
    torch.cuda.synchronize()
    assert torch.isfinite(batch.positions).all()
