"""On CUDA, look-alike steps where no observer, trajectory or log is due do not sync with the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.constraints import FixAtoms, FixCartesian, FixCom

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md import Langevin, VelocityVerlet
from nvalchemi_ase.models import LennardJones
from tests.cuda import no_syncs
from tests.lookalike.common import ARGON, TRAJECTORY_ATOL, with_velocities
from tests.structures import argon_bulk

pytestmark = pytest.mark.gpu


def _systems(device):
    systems = with_velocities([argon_bulk(2, seed=k) for k in range(4)])
    systems[1].set_constraint(FixAtoms(indices=[0, 3]))
    systems[2].set_constraint(FixCartesian([1], mask=(True, False, False)))
    systems[3].set_constraint(FixCom())
    calc = BatchedCalculator(LennardJones(**ARGON), device=device)
    for atoms in systems:
        atoms.calc = calc
    return systems


DYNAMICS = {
    "verlet": lambda systems: VelocityVerlet(systems, 2 * units.fs),
    "langevin-numpy": lambda systems: Langevin(
        systems, 2 * units.fs, temperature_K=100, friction=0.01 / units.fs, fixcm=False,
        rng=np.random.default_rng(0),
    ),
    "langevin-torch": lambda systems: Langevin(
        systems, 2 * units.fs, temperature_K=100, friction=0.01 / units.fs, fixcm=False,
        rng=torch.Generator(device="cuda").manual_seed(0),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(DYNAMICS))
def test_steps_between_outputs_do_not_sync(name):
    systems = _systems("cuda")
    dyn = DYNAMICS[name](systems)
    seen = []
    dyn.attach(lambda: seen.append(dyn.nsteps), interval=5)
    dyn.run(5)  # set-up and the observers at steps 0 and 5 (these may sync)
    with no_syncs():
        for _ in range(4):  # steps 6..9: nothing due
            dyn.engine.step(dyn.systems.batch)
    dyn.run(1)  # step 10 fires (syncs: allowed)
    assert seen == [0, 5, 10]


def test_cuda_equals_cpu():
    results = []
    for device in ("cpu", "cuda"):
        systems = _systems(device)
        DYNAMICS["langevin-numpy"](systems).run(30)
        results.append(np.concatenate([a.positions for a in systems]))
    np.testing.assert_allclose(results[0], results[1], rtol=0, atol=TRAJECTORY_ATOL)
