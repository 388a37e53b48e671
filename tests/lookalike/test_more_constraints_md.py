"""Constraints beyond FixAtoms in NoseHooverChainNVT, LangevinBAOAB, Andersen(fixcm=True) vs ASE."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.constraints import FixAtoms, FixBondLength, FixCartesian, FixCom, FixedPlane, Hookean
from ase.md.andersen import Andersen as AseAndersen
from ase.md.langevinbaoab import LangevinBAOAB as AseBAOAB
from ase.md.nose_hoover_chain import NoseHooverChainNVT as AseNoseHoover

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import NoseHooverChainNVT
from nvalchemi_ase.md.andersen import Andersen
from nvalchemi_ase.md.langevinbaoab import LangevinBAOAB
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs
STEPS = 40

CONSTRAINTS = {
    "fixcom": lambda: [FixCom()],
    "fixcartesian": lambda: [FixCartesian([1, 2], mask=(True, False, True))],
    "fixcartesian+fixatoms": lambda: [FixCartesian([1, 2], mask=(True, False, True)), FixAtoms(indices=[7])],
    "hookean": lambda: [Hookean(a1=0, a2=1, rt=3.5, k=2.0)],
    "hookean+fixatoms": lambda: [Hookean(a1=0, a2=1, rt=3.5, k=2.0), FixAtoms(indices=[4])],
    "plane": lambda: [FixedPlane([0, 1, 2], [0.0, 0.0, 1.0])],
    "fixcom+hookean": lambda: [Hookean(a1=0, a2=1, rt=3.5, k=2.0), FixCom()],
    "fixatoms": lambda: [FixAtoms(indices=[0, 5])],
    "bondlength": lambda: [FixBondLength(2, 3)],
    "fixcom+fixatoms": lambda: [FixAtoms(indices=[0]), FixCom()],
    "fixcom+plane": lambda: [FixCom(), FixedPlane([0, 1], [0.0, 0.0, 1.0])],
}


def _nhc(seed):
    return {"temperature_K": 80.0, "tdamp": 100 * DT}


def _baoab(seed):
    return {"temperature_K": 80.0, "T_tau": 50 * units.fs, "rng": np.random.default_rng(seed)}


def _baoab_nve(seed):
    return {}


def _andersen(seed):
    return {"temperature_K": 80.0, "andersen_prob": 0.05, "fixcm": True, "rng": np.random.default_rng(seed)}


CASES = {
    "nosehoover": (NoseHooverChainNVT, AseNoseHoover, _nhc),
    "baoab": (LangevinBAOAB, AseBAOAB, _baoab),
    "baoab-nve": (LangevinBAOAB, AseBAOAB, _baoab_nve),
    "andersen-fixcm": (Andersen, AseAndersen, _andersen),
}
SUPPORTED = {
    "nosehoover": [
        "fixcom",
        "fixcartesian",
        "fixcartesian+fixatoms",
        "hookean",
        "hookean+fixatoms",
        "plane",
        "fixcom+hookean",
    ],
    "baoab": [
        "fixcom",
        "fixcartesian",
        "fixcartesian+fixatoms",
        "hookean",
        "hookean+fixatoms",
        "plane",
        "fixcom+hookean",
    ],
    "baoab-nve": ["fixcom", "fixcartesian+fixatoms", "hookean+fixatoms", "plane"],
    "andersen-fixcm": [
        "fixatoms",
        "fixcartesian",
        "fixcartesian+fixatoms",
        "fixcom",
        "hookean",
        "bondlength",
        "fixcom+hookean",
    ],
}
REFUSED = {  # (case, constraints): the constraint type the message names
    ("nosehoover", "bondlength"): "FixBondLengths",
    ("nosehoover", "fixcom+fixatoms"): "FixCom with a FixAtoms",
    ("nosehoover", "fixcom+plane"): "FixCom with a FixedPlane",
    ("baoab", "bondlength"): "FixBondLengths",
    ("baoab", "fixcom+fixatoms"): "FixCom with a FixAtoms",
    ("baoab-nve", "bondlength"): "FixBondLengths",
    ("andersen-fixcm", "plane"): "FixedPlane",
    ("andersen-fixcm", "hookean+fixatoms"): "FixAtoms, Hookean",
    ("andersen-fixcm", "fixcom+fixatoms"): "FixAtoms, FixCom",
}


def _start(name, seed=1):
    atoms = with_velocities([argon_bulk(2, seed=seed, rattle=0.2)], seed=seed)[0]
    atoms.set_constraint(CONSTRAINTS[name]())
    atoms.set_momenta(atoms.get_momenta())  # momenta obeying the constraints, as ASE would hold them
    return atoms


def _check_constraint_held(name, start, atoms):
    """What the constraints promise, on our final state."""
    if name in ("fixcom", "fixcom+hookean"):
        np.testing.assert_allclose(atoms.get_center_of_mass(), start.get_center_of_mass(), atol=1e-10)
    if name.startswith("fixcartesian"):
        np.testing.assert_array_equal(atoms.positions[1, 0], start.positions[1, 0])
        np.testing.assert_array_equal(atoms.positions[2, [0, 2]], start.positions[2, [0, 2]])
    if name == "plane":
        np.testing.assert_allclose(atoms.positions[:3, 2], start.positions[:3, 2], rtol=0, atol=1e-12)
    if name == "bondlength":
        np.testing.assert_allclose(atoms.get_distance(2, 3), start.get_distance(2, 3), rtol=1e-10)


@pytest.mark.parametrize(("case", "name"), [(c, n) for c, names in SUPPORTED.items() for n in names])
def test_constraint_equals_ase(case, name):
    cls, ase_cls, params = CASES[case]
    start = _start(name)
    mine, reference = ours(start), theirs(start)
    dyn, ase_dyn = cls(mine, DT, **params(5)), ase_cls(reference, DT, **params(5))
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            assert_same_state(mine, reference, f"{case} {name} step {step}")
    assert_same_state(mine, reference, f"{case} {name}")
    assert np.abs(mine.positions - start.positions).max() > 1e-2  # the dynamics moved the atoms
    _check_constraint_held(name, start, mine)
    if case == "nosehoover":  # the chain read ASE's private momenta
        np.testing.assert_allclose(dyn.get_conserved_energy(), ase_dyn.get_conserved_energy(), rtol=1e-10)


@pytest.mark.parametrize("name", ["fixcom", "fixcartesian"])
def test_nosehoover_keeps_ases_private_momenta_of_a_start_breaking_the_constraint(name):
    """Momenta set before the constraint (a drift, moving held components): ASE's ``_p`` keeps them."""
    start = with_velocities([argon_bulk(2, seed=1, rattle=0.2)], seed=1)[0]
    start.set_momenta(start.get_momenta() + 0.3)
    start.set_constraint(CONSTRAINTS[name]())
    mine, reference = ours(start), theirs(start)
    dyn, ase_dyn = NoseHooverChainNVT(mine, DT, **_nhc(0)), AseNoseHoover(reference, DT, **_nhc(0))
    dyn.run(STEPS)
    ase_dyn.run(STEPS)
    assert_same_state(mine, reference, name)
    np.testing.assert_allclose(dyn.get_conserved_energy(), ase_dyn.get_conserved_energy(), rtol=1e-10)
    assert np.abs(ase_dyn._p - reference.get_momenta()).max() > 1e-2  # ASE's private momenta differ


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_list_mixing_constraints_gives_each_what_ase_gives_it(case):
    cls, ase_cls, params = CASES[case]
    names = [*SUPPORTED[case][:3], SUPPORTED[case][-1]]
    systems = [_start(name, seed=k + 2) for k, name in enumerate(names)] + [_start("fixcom", seed=9)]
    systems[-1].set_constraint()  # and one system without constraints
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    extra = params(0)
    if "rng" in extra:
        extra["rng"] = [np.random.default_rng(10 + b) for b in range(len(systems))]
    cls(mine, DT, **extra).run(STEPS)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_cls(reference, DT, **params(10 + b)).run(STEPS)
        assert_same_state(mine[b], reference, f"{case} system {b}")


@pytest.mark.parametrize(("case", "name"), sorted(REFUSED))
def test_refused_constraints_raise_naming_them(case, name):
    cls, _, params = CASES[case]
    atoms = ours(_start(name))
    with pytest.raises(NotImplementedError, match=REFUSED[case, name]):
        cls(atoms, DT, **params(0))


def test_ase_lets_bonds_drift_in_baoab():
    """Why BAOAB refuses FixBondLength: ASE moves positions without the constraint."""
    start = _start("bondlength")
    reference = theirs(start)
    AseBAOAB(reference, DT, **_baoab(5)).run(STEPS)
    assert abs(reference.get_distance(2, 3) - start.get_distance(2, 3)) > 1e-5


def test_ase_fixcom_moves_fixed_atoms():
    """Why NHC and BAOAB refuse FixCom next to FixAtoms: ASE's FixCom moves the fixed atom."""
    for case in ("nosehoover", "baoab"):
        _, ase_cls, params = CASES[case]
        start = _start("fixcom+fixatoms")
        reference = theirs(start)
        ase_cls(reference, DT, **params(5)).run(STEPS)
        assert np.abs(reference.positions[0] - start.positions[0]).max() > 1e-6, case
