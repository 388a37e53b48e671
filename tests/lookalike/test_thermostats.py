"""Andersen, Bussi, NVTBerendsen and NoseHooverChainNVT look-alikes against ASE's own classes."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.constraints import FixAtoms, FixBondLength, FixCom, FixedPlane
from ase.md.andersen import Andersen as AseAndersen
from ase.md.bussi import Bussi as AseBussi
from ase.md.nose_hoover_chain import NoseHooverChainNVT as AseNoseHoover
from ase.md.nvtberendsen import NVTBerendsen as AseBerendsen

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import Andersen, Bussi, NoseHooverChainNVT
from nvalchemi_ase.md.nvtberendsen import NVTBerendsen
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs

CASES = {
    "andersen": (Andersen, AseAndersen, {"temperature_K": 80.0, "andersen_prob": 0.05}, True),
    "andersen-nofixcm": (
        Andersen, AseAndersen, {"temperature_K": 80.0, "andersen_prob": 0.05, "fixcm": False}, True
    ),
    "bussi": (Bussi, AseBussi, {"temperature_K": 80.0, "taut": 50 * units.fs}, True),
    "berendsen": (NVTBerendsen, AseBerendsen, {"temperature_K": 80.0, "taut": 50 * units.fs}, False),
    "berendsen-nofixcm": (
        NVTBerendsen, AseBerendsen, {"temperature_K": 80.0, "taut": 50 * units.fs, "fixcm": False}, False
    ),
    "nosehoover": (NoseHooverChainNVT, AseNoseHoover, {"temperature_K": 80.0, "tdamp": 100 * DT}, False),
}  # fmt: skip


def _build(cls, atoms, params, stochastic, seed):
    extra = {"rng": np.random.default_rng(seed)} if stochastic else {}
    return cls(atoms, DT, **params, **extra)


@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_ase_step_by_step(name):
    cls, ase_cls, params, stochastic = CASES[name]
    start = with_velocities([argon_bulk(2, seed=1)], seed=1)[0]
    mine, reference = ours(start), theirs(start)
    dyn, ase_dyn = _build(cls, mine, params, stochastic, 5), _build(ase_cls, reference, params, stochastic, 5)
    assert dyn.todict() == ase_dyn.todict()
    for step, _ in enumerate(zip(dyn.irun(100), ase_dyn.irun(100), strict=True)):
        if step % 25 == 0:
            assert_same_state(mine, reference, f"{name} step {step}")
    assert_same_state(mine, reference, name)


@pytest.mark.parametrize("name", ["andersen-nofixcm", "bussi", "berendsen", "nosehoover"])
def test_a_list_gives_each_system_what_ase_gives_it_alone(name):
    cls, ase_cls, params, stochastic = CASES[name]
    systems = with_velocities([argon_bulk(1, seed=2), argon_bulk(2, seed=3), argon_bulk(1, seed=4)], seed=2)
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    extra = {"rng": [np.random.default_rng(10 + b) for b in range(3)]} if stochastic else {}
    cls(mine, DT, **params, **extra).run(60)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        _build(ase_cls, reference, params, stochastic, 10 + b).run(60)
        assert_same_state(mine[b], reference, f"{name} system {b}")


CONSTRAINED = {
    "bussi-fixcom": ("bussi", lambda: [FixCom()]),
    "bussi-bond": ("bussi", lambda: [FixBondLength(0, 1), FixAtoms(indices=[5])]),
    "berendsen-fixatoms": ("berendsen", lambda: [FixAtoms(indices=[0, 4])]),
    "berendsen-bond": ("berendsen-nofixcm", lambda: [FixBondLength(2, 3)]),
    "andersen-fixatoms": ("andersen-nofixcm", lambda: [FixAtoms(indices=[1, 2])]),
}


@pytest.mark.parametrize("label", sorted(CONSTRAINED))
def test_constraints_as_ase(label):
    name, constraints = CONSTRAINED[label]
    cls, ase_cls, params, stochastic = CASES[name]
    start = with_velocities([argon_bulk(2, seed=6)], seed=6)[0]
    start.set_constraint(constraints())
    start.set_momenta(start.get_momenta())
    mine, reference = ours(start), theirs(start)
    _build(cls, mine, params, stochastic, 7).run(60)
    _build(ase_cls, reference, params, stochastic, 7).run(60)
    assert_same_state(mine, reference, label)


def test_ase_checks_and_unsupported_cases():
    still = ours(argon_bulk(1))
    with pytest.raises(ValueError, match="kinetic energy is zero"):
        Bussi(still, DT, temperature_K=80, taut=10 * units.fs)
    with pytest.raises(TypeError, match="taut"):
        NVTBerendsen(still, DT, temperature_K=80)
    fixed = ours(argon_bulk(1))
    fixed.set_constraint(FixedPlane([0], [0, 0, 1]))
    with pytest.raises(NotImplementedError, match="fixcm"):
        Andersen(fixed, DT, temperature_K=80, andersen_prob=0.1)
    moving = ours(with_velocities([argon_bulk(1)])[0])
    dyn = Bussi(moving, DT, 80, 10 * units.fs, rng=np.random.default_rng(3))
    ase_dyn = AseBussi(theirs(moving), DT, 80, 10 * units.fs, rng=np.random.default_rng(3))
    assert dyn.ndof == ase_dyn.ndof
    assert dyn.target_kinetic_energy == pytest.approx(ase_dyn.target_kinetic_energy)
    dyn.run(20)
    ase_dyn.run(20)
    assert dyn.transferred_energy == pytest.approx(ase_dyn.transferred_energy, rel=1e-10, abs=1e-14)


def test_langevin_baoab_equals_ase():
    from ase.md.langevinbaoab import LangevinBAOAB as AseBAOAB

    from nvalchemi_ase.md.langevinbaoab import LangevinBAOAB

    systems = with_velocities([argon_bulk(1, seed=8), argon_bulk(2, seed=9)], seed=8)
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    params = {"temperature_K": 80.0, "T_tau": 50 * units.fs}
    LangevinBAOAB(mine, DT, rng=[np.random.default_rng(20 + b) for b in range(2)], **params).run(80)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        AseBAOAB(reference, DT, rng=np.random.default_rng(20 + b), **params).run(80)
        assert_same_state(mine[b], reference, f"system {b}")
    with pytest.warns(UserWarning, match="T_tau"):
        LangevinBAOAB(mine, DT, temperature_K=80.0, rng=1)
