"""ASE constraints in the look-alikes: on the device (FixAtoms, FixCartesian, FixCom) and on the host."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.constraints import FixAtoms, FixBondLength, FixCartesian, FixCom, FixedPlane, Hookean
from ase.md.langevin import Langevin as AseLangevin
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase._lookalike import HostConstraintHook
from nvalchemi_ase.hooks.constraints import ConstraintHook
from nvalchemi_ase.md import Langevin, VelocityVerlet
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import FIRE
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs

CONSTRAINTS = {
    "fixatoms": lambda: [FixAtoms(indices=[0, 5, 9])],
    "fixcartesian": lambda: [FixCartesian([1, 2], mask=(True, False, True)), FixAtoms(indices=[7])],
    "fixcom": lambda: [FixCom()],
    "hookean": lambda: [Hookean(a1=0, a2=1, rt=3.5, k=2.0), FixAtoms(indices=[4])],
    "bondlength": lambda: [FixBondLength(2, 3)],
    "plane": lambda: [FixedPlane([0, 1, 2], [0.0, 0.0, 1.0])],
}
DEVICE_PATH = {"fixatoms", "fixcartesian", "fixcom"}


def _start(name, seed=0):
    atoms = with_velocities([argon_bulk(2, seed=seed, rattle=0.2)], seed=seed)[0]
    atoms.set_constraint(CONSTRAINTS[name]())
    atoms.set_momenta(atoms.get_momenta())  # momenta obeying the constraints, as ASE would hold them
    return atoms


def _hooks(dyn):
    return {type(hook) for hook in dyn.engine.hooks}


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_velocity_verlet_with_constraints_equals_ase(name):
    atoms = _start(name)
    mine, reference = ours(atoms), theirs(atoms)
    dyn = VelocityVerlet(mine, DT)
    assert (ConstraintHook in _hooks(dyn) or name == "fixatoms") == (name in DEVICE_PATH)
    assert (HostConstraintHook in _hooks(dyn)) == (name not in DEVICE_PATH)
    dyn.run(100)
    AseVelocityVerlet(reference, DT).run(100)
    assert_same_state(mine, reference, name)
    np.testing.assert_allclose(mine.get_temperature(), reference.get_temperature(), rtol=1e-10)
    if name == "fixatoms":
        np.testing.assert_array_equal(mine.positions[[0, 5, 9]], atoms.positions[[0, 5, 9]])


@pytest.mark.parametrize("name", sorted(CONSTRAINTS))
def test_fire_with_constraints_equals_ase(name):
    atoms = _start(name, seed=1)
    mine, reference = ours(atoms), theirs(atoms)
    outcome = FIRE(mine, logfile=None).run(fmax=0.02, steps=60)
    ase_outcome = AseFIRE(reference, logfile=None).run(fmax=0.02, steps=60)
    assert outcome == ase_outcome
    assert_same_state(mine, reference, name, momenta=False)
    np.testing.assert_allclose(mine.get_forces(), reference.get_forces(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", ["fixcom", "hookean"])
def test_langevin_with_constraints_equals_ase(name):
    atoms = _start(name, seed=2)
    mine, reference = ours(atoms), theirs(atoms)
    params = {"temperature_K": 80.0, "friction": 0.02 / units.fs, "fixcm": False}
    Langevin(mine, DT, rng=np.random.default_rng(3), **params).run(100)
    AseLangevin(reference, DT, rng=np.random.default_rng(3), **params).run(100)
    assert_same_state(mine, reference, name)
    if name == "fixcom":
        assert np.abs(mine.get_momenta().sum(axis=0)).max() < 1e-10


def test_a_list_mixing_device_and_host_constraints_equals_ase_per_system():
    names = ["fixatoms", "hookean", "fixcom", "bondlength"]
    systems = [_start(name, seed=k) for k, name in enumerate(names)]
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    VelocityVerlet(mine, DT).run(60)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseVelocityVerlet(reference, DT).run(60)
        assert_same_state(mine[b], reference, names[b])
