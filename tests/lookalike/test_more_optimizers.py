"""BFGS, LBFGS and MDMin look-alikes against ASE's own classes in the same script."""

from __future__ import annotations

import numpy as np
import pytest
from ase.optimize import BFGS as AseBFGS
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import MDMin as AseMDMin

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import BFGS, LBFGS, MDMin
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs
from tests.structures import argon_bulk, ragged_systems

PAIRS = {
    "bfgs": (BFGS, AseBFGS, {"maxstep": 0.1, "alpha": 50.0}),
    "lbfgs": (LBFGS, AseLBFGS, {"maxstep": 0.1, "memory": 5, "damping": 0.9}),
    "mdmin": (MDMin, AseMDMin, {"dt": 0.1, "maxstep": 0.1}),
}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_step_by_step_equals_ase(name):
    ours_class, ase_class, params = PAIRS[name]
    atoms = argon_bulk(2, seed=3, rattle=0.25)
    mine, reference = ours(atoms), theirs(atoms)
    opt, ase_opt = ours_class(mine, logfile=None, **params), ase_class(reference, logfile=None, **params)
    assert opt.todict() == ase_opt.todict()
    for step, (a, b) in enumerate(
        zip(opt.irun(fmax=1e-4, steps=40), ase_opt.irun(fmax=1e-4, steps=40), strict=True)
    ):
        assert a == b
        assert_same_state(mine, reference, f"{name} step {step}", momenta=False)


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_list_converges_per_system_as_ase(name):
    ours_class, ase_class, _ = PAIRS[name]
    systems = [argon_bulk(1, seed=1, rattle=0.2), *ragged_systems(seed=2)[1:4]]
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    opt = ours_class(mine, logfile=None)
    assert opt.run(fmax=0.03, steps=300)
    steps = []
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_opt = ase_class(reference, logfile=None)
        assert ase_opt.run(fmax=0.03, steps=300)
        steps.append(ase_opt.nsteps)
        assert_same_state(mine[b], reference, f"{name} system {b}", momenta=False)
    assert opt.nsteps == max(steps)


def test_ases_warnings_and_errors():
    atoms = ours(argon_bulk(1))
    with pytest.warns(UserWarning, match="very"):
        BFGS(atoms, logfile=None, maxstep=1.5)
    with pytest.raises(ValueError, match="too large"):
        LBFGS(atoms, logfile=None, maxstep=1.5)
    assert MDMin(atoms, logfile=None, dt=0).dt == 0.2  # ASE's `dt or 0.2`
    np.testing.assert_equal(
        BFGS(atoms, logfile=None).todict(), AseBFGS(theirs(argon_bulk(1)), logfile=None).todict()
    )
