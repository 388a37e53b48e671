"""On CUDA the engine thermostats step without device→host syncs, and the deterministic ones match the CPU."""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators.andersen import Andersen
from nvalchemi_ase.dynamics.integrators.berendsen import NVTBerendsen
from nvalchemi_ase.dynamics.integrators.bussi import Bussi
from nvalchemi_ase.dynamics.integrators.langevin_baoab import LangevinBAOAB
from nvalchemi_ase.dynamics.integrators.nose_hoover import NoseHooverChainNVT
from nvalchemi_ase.models import LennardJones
from tests.cuda import no_syncs
from tests.structures import argon_bulk
from tests.tolerances import DEVICE_MATCH_ATOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
START = {"initial_temperature": 60.0, "velocity_seed": 0}
TEMPERATURES = [50.0, 80.0, 120.0, 160.0]

pytestmark = pytest.mark.gpu

ENGINES = {
    "andersen": lambda: Andersen(LennardJones(**ARGON), 2.0, TEMPERATURES, 0.1, seed=0, **START),
    "berendsen": lambda: NVTBerendsen(LennardJones(**ARGON), 2.0, TEMPERATURES, taut=20.0, **START),
    "bussi": lambda: Bussi(LennardJones(**ARGON), 2.0, TEMPERATURES, taut=20.0, seed=0, **START),
    "nose-hoover": lambda: NoseHooverChainNVT(LennardJones(**ARGON), 2.0, TEMPERATURES, tdamp=20.0, **START),
    "baoab": lambda: LangevinBAOAB(LennardJones(**ARGON), 2.0, TEMPERATURES, T_tau=20.0, seed=0, **START),
}


def _batch(device: str) -> Batch:
    systems = [argon_bulk(1, seed=0), argon_bulk(2, seed=1), argon_bulk(1, seed=2), argon_bulk(2, seed=3)]
    return Batch.from_atoms(systems, device=device)


@pytest.mark.parametrize("name", list(ENGINES))
def test_thermostat_steps_do_not_sync(name):
    batch = _batch("cuda")
    engine = ENGINES[name]()
    engine.run(batch, n_steps=3)  # set-up: state fields, coefficients, kernels (may sync)
    with no_syncs():
        for _ in range(20):
            engine.step(batch)
    torch.cuda.synchronize()
    assert torch.isfinite(batch.positions).all() and torch.isfinite(batch.velocities).all()


@pytest.mark.parametrize("name", ["berendsen", "nose-hoover"])
def test_deterministic_thermostats_match_the_cpu(name):
    velocities = 0.01 * torch.randn(
        _batch("cpu").velocities.shape, generator=torch.Generator().manual_seed(1)
    )
    final = {}
    for device in ("cpu", "cuda"):
        batch = _batch(device)
        batch.velocities = velocities.to(device=device, dtype=batch.dtype)
        engine = ENGINES[name]()
        engine.initial_temperature = None  # keep the velocities set above on both devices
        engine.run(batch, n_steps=30)
        final[device] = (batch.positions.cpu(), batch.velocities.cpu())
    for ours, reference in zip(final["cuda"], final["cpu"], strict=True):
        torch.testing.assert_close(ours, reference, rtol=0, atol=DEVICE_MATCH_ATOL)
