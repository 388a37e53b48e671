"""LangevinBAOAB with ``externalstress`` (NPH / NPT, hydrostatic and full cell) against ASE's own class."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.md.langevinbaoab import LangevinBAOAB as AseBAOAB

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md.langevinbaoab import LangevinBAOAB
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs
STEPS = 30
ATOL = 1e-9

CASES = {
    "nph-hydrostatic": {"externalstress": -1e-4, "hydrostatic": True, "P_tau": 200 * units.fs},
    "nph-full": {"externalstress": [-1e-4, -2e-4, 0.0, 1e-5, 0.0, 2e-5], "P_tau": 200 * units.fs},
    "npt-hydrostatic": {
        "externalstress": 1e-4, "hydrostatic": True, "temperature_K": 80.0, "T_tau": 20 * units.fs,
    },
    "npt-full": {
        "externalstress": -1e-4, "temperature_K": 80.0, "T_tau": 20 * units.fs, "P_tau": 100 * units.fs,
        "P_mass_factor": 0.5,
    },
    "npt-full-3x3-no-cell-langevin": {
        "externalstress": np.diag([-1e-4, 0.0, 1e-4]), "temperature_K": 80.0, "T_tau": 20 * units.fs,
        "P_tau": 100 * units.fs, "disable_cell_langevin": True, "P_mass": 3000.0,
    },
}  # fmt: skip


def _start(seed: int = 1):
    atoms = with_velocities([argon_bulk(2, seed=seed)], seed=seed)[0]
    atoms.set_cell(atoms.cell @ np.array([[1.0, 0.02, 0.0], [0.0, 1.0, 0.01], [0.0, 0.0, 1.0]]), True)
    return atoms


def _assert_same(mine, reference, label):
    for name, a, b in (
        ("positions", mine.positions, reference.positions),
        ("momenta", mine.get_momenta(), reference.get_momenta()),
        ("cell", mine.cell[:], reference.cell[:]),
    ):
        np.testing.assert_allclose(a, b, rtol=0, atol=ATOL, err_msg=f"{label} {name}")


def _rng(params, seed):
    return {"rng": np.random.default_rng(seed)} if "temperature_K" in params else {}


@pytest.mark.filterwarnings("ignore:Using heuristic P_mass")
@pytest.mark.filterwarnings("ignore:Got `externalstress`")
@pytest.mark.parametrize("name", sorted(CASES))
def test_equals_ase(name):
    params = CASES[name]
    start = _start()
    mine, reference = ours(start), theirs(start)
    dyn = LangevinBAOAB(mine, DT, **params, **_rng(params, 5))
    ase_dyn = AseBAOAB(reference, DT, **params, **_rng(params, 5))
    assert dyn.todict() == ase_dyn.todict()
    np.testing.assert_allclose(dyn.barostat_mass, ase_dyn.barostat_mass, rtol=1e-14)
    assert dyn.Ndof == ase_dyn.Ndof
    assert dyn.P_tau == ase_dyn.P_tau
    np.testing.assert_array_equal(dyn.externalstress, ase_dyn.externalstress)
    for step, _ in enumerate(zip(dyn.irun(STEPS), ase_dyn.irun(STEPS), strict=True)):
        if step % 10 == 0:
            _assert_same(mine, reference, f"{name} step {step}")
    _assert_same(mine, reference, name)
    np.testing.assert_allclose(dyn.p_eps, ase_dyn.p_eps, rtol=1e-8, atol=1e-12)
    assert not np.allclose(mine.cell[:], start.cell[:], rtol=0, atol=1e-6)  # the cell did move


@pytest.mark.filterwarnings("ignore:Using heuristic P_mass")
@pytest.mark.filterwarnings("ignore:Got `externalstress`")
@pytest.mark.parametrize("name", ["npt-hydrostatic", "npt-full"])
def test_a_list_gives_each_system_what_ase_gives_it_alone(name):
    params = CASES[name]
    systems = [_start(2), with_velocities([argon_bulk(1, seed=3)], seed=3)[0]]
    calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
    mine = [ours(atoms, calc) for atoms in systems]
    rngs = [np.random.default_rng(10 + b) for b in range(2)]
    dyn = LangevinBAOAB(mine, DT, **params, rng=rngs)
    dyn.run(STEPS)
    for b, atoms in enumerate(systems):
        reference = theirs(atoms)
        ase_dyn = AseBAOAB(reference, DT, **params, rng=np.random.default_rng(10 + b))
        np.testing.assert_allclose(dyn.barostat_mass[b], ase_dyn.barostat_mass, rtol=1e-14)
        ase_dyn.run(STEPS)
        _assert_same(mine[b], reference, f"{name} system {b}")


@pytest.mark.parametrize(
    ("stress", "hydrostatic"),
    [([1e-4, 2e-4, 3e-4], True), (np.eye(3), True), ([1.0, 2.0], False), (np.zeros(4), False)],
)
def test_bad_externalstress_raises_value_error_as_ase(stress, hydrostatic):
    start = _start()
    with pytest.raises(ValueError) as ase_error:
        AseBAOAB(theirs(start), DT, externalstress=stress, hydrostatic=hydrostatic, P_mass=1e3, P_tau=1.0)
    with pytest.raises(ValueError) as error:
        LangevinBAOAB(ours(start), DT, externalstress=stress, hydrostatic=hydrostatic, P_mass=1e3, P_tau=1.0)
    if hydrostatic:
        assert "must be scalar when hydrostatic" in str(ase_error.value)
        assert "must be scalar when hydrostatic" in str(error.value)


def test_ase_defaults_and_warnings():
    start = _start()
    with pytest.warns(UserWarning) as ase_warnings:
        ase_dyn = AseBAOAB(theirs(start), DT, externalstress=0.0, T_tau=10 * units.fs)
    with pytest.warns(UserWarning) as our_warnings:
        dyn = LangevinBAOAB(ours(start), DT, externalstress=0.0, T_tau=10 * units.fs)
    assert [str(w.message) for w in our_warnings] == [str(w.message) for w in ase_warnings]
    assert dyn.P_tau == ase_dyn.P_tau
    assert dyn.barostat_mass == pytest.approx(ase_dyn.barostat_mass, rel=1e-14)
    for bad in ({"P_tau": -1.0}, {"T_tau": 0.0}):
        with pytest.raises(ValueError, match="Invalid"):
            AseBAOAB(theirs(start), DT, externalstress=0.0, P_mass=1.0, **bad)
        with pytest.raises(ValueError, match="Invalid"):
            LangevinBAOAB(ours(start), DT, externalstress=0.0, P_mass=1.0, **bad)
