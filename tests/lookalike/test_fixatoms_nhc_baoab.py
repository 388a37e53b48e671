"""FixAtoms in the NoseHooverChainNVT and LangevinBAOAB look-alikes against ASE's own classes."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.constraints import FixAtoms, FixBondLength
from ase.md.langevinbaoab import LangevinBAOAB as AseBAOAB
from ase.md.nose_hoover_chain import NoseHooverChainNVT as AseNoseHoover

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import NoseHooverChainNVT
from nvalchemi_ase.md.langevinbaoab import LangevinBAOAB
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs
STEPS = 50
FIXED = [0, 3, 5]


def _fixed(atoms):
    """FixAtoms on ``FIXED``; the momenta set again through it (so the fixed atoms start at rest)."""
    atoms.set_constraint(FixAtoms(indices=FIXED))
    atoms.set_momenta(atoms.get_momenta())
    return atoms


def _nhc(atoms, seed):
    return {"temperature_K": 80.0, "tdamp": 100 * DT}


def _baoab(atoms, seed):
    return {"temperature_K": 80.0, "T_tau": 50 * units.fs, "rng": np.random.default_rng(seed)}


def _baoab_nve(atoms, seed):
    return {}


CASES = {
    "nosehoover": (NoseHooverChainNVT, AseNoseHoover, _nhc),
    "baoab": (LangevinBAOAB, AseBAOAB, _baoab),
    "baoab-nve": (LangevinBAOAB, AseBAOAB, _baoab_nve),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_fixatoms_equals_ase(name):
    cls, ase_cls, params = CASES[name]
    start = _fixed(with_velocities([argon_bulk(2, seed=1)], seed=1)[0])
    mine, reference = ours(start), theirs(start)
    origin = start.positions[FIXED].copy()
    dyn, ase_dyn = cls(mine, DT, **params(mine, 5)), ase_cls(reference, DT, **params(reference, 5))
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            assert_same_state(mine, reference, f"{name} step {step}")
    assert_same_state(mine, reference, name)
    np.testing.assert_array_equal(mine.positions[FIXED], origin)
    np.testing.assert_array_equal(mine.get_momenta()[FIXED], 0.0)
    assert np.abs(mine.positions - start.positions).max() > 1e-3  # the others moved
    if name == "nosehoover":  # ASE's chain and conserved energy (its private momenta of fixed atoms)
        np.testing.assert_allclose(dyn.get_conserved_energy(), ase_dyn.get_conserved_energy(), rtol=1e-10)
        assert np.abs(ase_dyn._p[FIXED]).max() > 1e-3  # what the test is about: ASE keeps them


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_list_with_and_without_fixatoms_gives_each_what_ase_gives_it(name):
    cls, ase_cls, params = CASES[name]
    systems = with_velocities([argon_bulk(2, seed=2), argon_bulk(1, seed=3)], seed=2)
    _fixed(systems[0])
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    extra = params(None, 0)
    if "rng" in extra:
        extra["rng"] = [np.random.default_rng(10 + b) for b in range(len(systems))]
    cls(mine, DT, **extra).run(STEPS)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        extra = params(reference, 10 + b)
        ase_cls(reference, DT, **extra).run(STEPS)
        assert_same_state(mine[b], reference, f"{name} system {b}")
    np.testing.assert_array_equal(mine[0].positions[FIXED], systems[0].positions[FIXED])


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("constraint", [lambda: FixBondLength(0, 1)])
def test_other_constraints_raise_naming_them(name, constraint):
    cls, _, params = CASES[name]
    atoms = ours(with_velocities([argon_bulk(1, seed=4)])[0])
    made = constraint()
    atoms.set_constraint([FixAtoms(indices=[3]), made])
    with pytest.raises(NotImplementedError, match=f"{type(made).__name__}.*only FixAtoms"):
        cls(atoms, DT, **params(atoms, 0))


def test_baoab_variable_cell_with_fixatoms_raises():
    atoms = _fixed(ours(with_velocities([argon_bulk(2, seed=4)])[0]))
    with pytest.raises(NotImplementedError, match="scales FixAtoms atoms with the cell"):
        LangevinBAOAB(atoms, DT, externalstress=0.0, hydrostatic=True, P_tau=100 * units.fs, P_mass=1e3)
