"""Trajectory frames of look-alikes on a plain ASE calculator carry what ASE's own frames carry."""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.constraints import FixAtoms
from ase.io import read
from ase.md.nvtberendsen import NVTBerendsen as AseNVTBerendsen
from ase.md.verlet import VelocityVerlet as AseVelocityVerlet
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase.md.nvtberendsen import NVTBerendsen
from nvalchemi_ase.md.verlet import VelocityVerlet
from nvalchemi_ase.optimize import FIRE

CASES = {
    "berendsen": (
        NVTBerendsen,
        AseNVTBerendsen,
        {"timestep": 2 * units.fs, "temperature_K": 300, "taut": 50 * units.fs},
        {},
    ),
    "verlet": (VelocityVerlet, AseVelocityVerlet, {"timestep": 2 * units.fs}, {}),
    "fire": (FIRE, AseFIRE, {"logfile": None}, {"fmax": 1e-3}),
}


def _copper(seed: int, calc) -> object:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=seed)
    atoms.set_momenta(np.random.default_rng(seed).normal(scale=0.5, size=(len(atoms), 3)))
    atoms.set_constraint(FixAtoms([0]))
    atoms.calc = calc
    return atoms


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("shared", [False, True])
def test_frames_hold_ases_results(tmp_path, name, shared):
    ours, theirs, kwargs, run = CASES[name]
    one = EMT()
    systems = [_copper(b, one if shared else EMT()) for b in range(2)]
    with ours(systems, trajectory=tmp_path / "ours.traj", **kwargs) as dyn:
        dyn.run(steps=4, **run)
    for b in range(2):
        with theirs(_copper(b, EMT()), trajectory=tmp_path / f"ase_{b}.traj", **kwargs) as dyn:
            dyn.run(steps=4, **run)
        frames, expected = read(tmp_path / f"ours_{b}.traj", ":"), read(tmp_path / f"ase_{b}.traj", ":")
        assert len(frames) == len(expected) == 5
        for frame, reference in zip(frames, expected, strict=True):
            assert sorted(frame.calc.results) == sorted(reference.calc.results)
            for key, value in reference.calc.results.items():
                np.testing.assert_allclose(frame.calc.results[key], value, rtol=1e-9, atol=1e-10, err_msg=key)
