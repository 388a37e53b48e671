"""Engine users get FixCartesian and FixCom on the device: NVE + ConstraintHook equals VelocityVerlet."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.constraints import FixBondLength, FixCartesian, FixCom
from ase.md.velocitydistribution import thermalize_momenta
from ase.md.verlet import VelocityVerlet

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.hooks import ConstraintHook, Constraints
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def _systems():
    systems = [argon_bulk(1, seed=k) for k in range(3)]
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=60.0, rng=np.random.default_rng(k))
    systems[0].set_constraint(FixCartesian([1, 2], mask=(True, False, True)))
    systems[1].set_constraint(FixCom())
    return systems


def test_nve_with_the_constraint_hook_equals_ase():
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    constraints = Constraints.from_batch(batch)
    assert constraints.held is not None and constraints.fixcom.tolist() == [False, True, False]
    NVE(LennardJones(**ARGON), dt=2.0, hooks=[ConstraintHook(constraints)]).run(batch, n_steps=50)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        VelocityVerlet(reference, 2.0 * units.fs).run(50)
        mine = slice(ptr[b], ptr[b + 1])
        np.testing.assert_allclose(batch.positions[mine].numpy(), reference.positions, rtol=0, atol=1e-10)
        np.testing.assert_allclose(
            batch.velocities[mine].numpy(), reference.get_velocities(), rtol=0, atol=1e-10
        )


def test_other_constraints_are_named():
    atoms = argon_bulk(1)
    atoms.set_constraint(FixBondLength(0, 1))
    with pytest.raises(NotImplementedError, match="system 0: constraints: FixBondLength"):
        Constraints.from_batch(Batch.from_atoms([argon_bulk(1), atoms][1:], device="cpu"))
