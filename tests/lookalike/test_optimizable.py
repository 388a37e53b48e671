"""ASE's ``Optimizable`` on the optimizer look-alikes: ASE's test_unconverged, per system and for lists."""

from __future__ import annotations

import numpy as np
import pytest
from ase import optimize as ase_optimize
from ase.constraints import FixAtoms
from ase.utils.abc import Optimizable

from nvalchemi_ase import optimize
from tests.lookalike.common import ours, theirs
from tests.structures import argon_bulk

NAMES = ["FIRE", "BFGS", "LBFGS", "LBFGSLineSearch", "MDMin"]


def _atoms(seed: int = 0):
    atoms = argon_bulk(1, seed=seed, rattle=0.2)
    atoms.set_constraint(FixAtoms([1]))
    return atoms


@pytest.mark.parametrize("name", NAMES)
def test_ases_test_unconverged_passes(name):
    """ASE's own ``test_unconverged`` (ase/test/optimize/test_optimizers.py), on ours."""
    fmax = 1e-9
    with getattr(optimize, name)(ours(_atoms()), logfile=None) as opt:
        opt.run(fmax=fmax, steps=1)
    gradient = opt.optimizable.get_gradient()
    assert not opt.gradient_converged(gradient)
    assert not opt.converged()
    assert not opt.converged(forces=-gradient.reshape(-1, 3))
    assert opt.todict()["fmax"] == 1e-9


@pytest.mark.parametrize("name", NAMES)
def test_one_system_is_ases_optimizable_with_ases_numbers(name):
    mine = getattr(optimize, name)(ours(_atoms()), logfile=None)
    reference = getattr(ase_optimize, name)(theirs(_atoms()), logfile=None)
    mine.run(fmax=1e-9, steps=3)
    reference.run(fmax=1e-9, steps=3)
    assert type(mine.optimizable) is type(reference.optimizable)
    assert mine.optimizable.ndofs() == reference.optimizable.ndofs()
    np.testing.assert_allclose(mine.optimizable.get_x(), reference.optimizable.get_x(), rtol=0, atol=1e-10)
    np.testing.assert_allclose(
        mine.optimizable.get_gradient(), reference.optimizable.get_gradient(), rtol=1e-9, atol=1e-10
    )
    assert mine.optimizable.get_value() == pytest.approx(reference.optimizable.get_value(), rel=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_a_list_is_one_problem_and_each_system_its_own(name):
    systems = [ours(_atoms(seed)) for seed in range(3)]
    opt = getattr(optimize, name)(systems, logfile=None)
    opt.run(fmax=1e-9, steps=2)
    whole = opt.optimizable
    assert isinstance(whole, Optimizable) and len(opt.optimizables) == 3
    assert whole.ndofs() == 3 * sum(len(a) for a in systems)
    np.testing.assert_array_equal(whole.get_x(), np.concatenate([a.positions.ravel() for a in systems]))
    np.testing.assert_array_equal(
        whole.get_gradient(), np.concatenate([-a.get_forces().ravel() for a in systems])
    )
    assert whole.get_value() == pytest.approx(sum(a.get_potential_energy() for a in systems), rel=1e-12)
    assert list(whole.iterimages()) == systems
    for atoms, part in zip(systems, opt.optimizables, strict=True):
        np.testing.assert_array_equal(part.get_gradient(), -atoms.get_forces().ravel())
    assert not opt.gradient_converged(whole.get_gradient())
    assert opt.gradient_converged(np.zeros(whole.ndofs()))
    x = whole.get_x() + 0.01
    whole.set_x(x)
    moved = x[-3 * len(systems[2]) :].reshape(-1, 3)
    np.testing.assert_array_equal(systems[2].positions[[0, 2, 3]], moved[[0, 2, 3]])  # atom 1 is fixed
    with pytest.raises(ValueError, match="coordinates for"):
        whole.set_x(x[:-1])
