"""A pretrained potential under the ASE look-alikes: Langevin and FIRE on a list of Atoms.

Trajectories read back with ``ase.io.read`` carrying energy and forces, and a
system in the batch moves as the same system run alone.
"""

from __future__ import annotations

import numpy as np
import pytest
from ase import units
from ase.io import read

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md.langevin import Langevin
from nvalchemi_ase.optimize import FIRE
from tests.structures import mlip_systems

pytest.importorskip("sevenn", reason="sevenn is not installed (extra [sevenn])")

STEPS = 4
BATCH_ALONE_ATOL = 1e-5
"""Å after a few steps: the float32 network sums a system's terms in the same order alone or in a batch,
but the float32 casts of float64 positions that moved differently by ~1e-16 may round apart."""


@pytest.fixture(scope="module")
def calculator():
    from nvalchemi_ase.models import load

    return BatchedCalculator(load("7net-0"), device="cpu")


def _systems(calculator):
    systems = [mlip_systems()[k] for k in (0, 2, 5)]  # bulk, binary crystal, triclinic: 8 atoms in all
    for atoms in systems:
        atoms.calc = calculator
    return systems


def _langevin(systems, trajectory=None):
    rng = [np.random.default_rng(seed) for seed in range(len(systems))]
    dyn = Langevin(
        systems, 1 * units.fs, temperature_K=300, friction=0.02, fixcm=False, rng=rng, trajectory=trajectory
    )
    dyn.run(STEPS)
    dyn.close()


def test_langevin_trajectories_and_batch_invariance(calculator, tmp_path):
    systems = _systems(calculator)
    _langevin(systems, trajectory=str(tmp_path / "md.traj"))
    for k, atoms in enumerate(systems):
        frames = read(tmp_path / f"md_{k}.traj", ":")
        assert len(frames) == STEPS + 1
        assert np.isfinite(frames[-1].get_potential_energy()) and frames[-1].get_forces().shape == (
            len(atoms),
            3,
        )
    alone = _systems(calculator)[1:2]
    rng = np.random.default_rng(1)  # system 1's generator in the batch
    dyn = Langevin(alone[0], 1 * units.fs, temperature_K=300, friction=0.02, fixcm=False, rng=rng)
    dyn.run(STEPS)
    np.testing.assert_allclose(alone[0].positions, systems[1].positions, atol=BATCH_ALONE_ATOL)


def test_fire_trajectories_and_batch_invariance(calculator, tmp_path):
    systems = _systems(calculator)
    FIRE(systems, trajectory=str(tmp_path / "opt.traj")).run(fmax=0.01, steps=STEPS)
    for k in range(len(systems)):
        frames = read(tmp_path / f"opt_{k}.traj", ":")
        assert len(frames) >= 2 and all(np.isfinite(f.get_potential_energy()) for f in frames)
        assert frames[-1].get_forces().shape == (len(systems[k]), 3)
    alone = _systems(calculator)[2]
    FIRE(alone).run(fmax=0.01, steps=STEPS)
    np.testing.assert_allclose(alone.positions, systems[2].positions, atol=BATCH_ALONE_ATOL)


@pytest.mark.slow
def test_command_line_runs_a_pretrained_model_by_name(tmp_path):
    """``nvalchemi-ase run ... --model 7net-0``: the CLI takes the same names as ``load`` (about 20 s)."""
    from ase.io import write

    from nvalchemi_ase.cli import EXIT_OK, main

    source = tmp_path / "in.extxyz"
    write(source, [mlip_systems()[k] for k in (0, 2)])
    out = tmp_path / "run"
    arguments = [
        "run",
        str(source),
        "--model",
        "7net-0",
        "--relax-steps",
        "3",
        "--steps",
        "3",
        "-o",
        str(out),
    ]
    assert main([*arguments, "-q"]) == EXIT_OK
    finals = read(out / "final.extxyz", ":")
    assert len(finals) == 2 and all(np.isfinite(atoms.get_potential_energy()) for atoms in finals)
