"""The NPT engines in the stage loop: fused after a relaxation, invariants over long runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, MTKNPT, ConvergenceHook, MelchionnaNPT, NPTBerendsen
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
TEMPERATURES = [40.0, 60.0, 80.0]
PRESSURES = [0.0, 1e-4, 5e-4]
ENGINES = {
    "mtk": lambda: MTKNPT(LennardJones(**ARGON), 2.0, TEMPERATURES, PRESSURES, tdamp=50.0, pdamp=300.0),
    "mtk-isotropic": lambda: MTKNPT(
        LennardJones(**ARGON), 2.0, TEMPERATURES, PRESSURES, tdamp=50.0, pdamp=300.0, isotropic=True
    ),
    "berendsen": lambda: NPTBerendsen(
        LennardJones(**ARGON), 2.0, TEMPERATURES, 50.0, PRESSURES, taup=200.0, compressibility=2.0
    ),
    "melchionna": lambda: MelchionnaNPT(
        LennardJones(**ARGON), 2.0, TEMPERATURES, PRESSURES, ttime=25.0, pfactor=60.0
    ),
}


def _systems():
    return [argon_bulk(1 + k % 2, seed=k, rattle=0.1 + 0.1 * k) for k in range(3)]


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_relax_then_npt_fused_equals_the_two_run_separately(name):
    """Systems enter NPT at different steps; the cells of those still relaxing stay put."""
    fused_batch = Batch.from_atoms(_systems(), device="cpu")
    fused_batch.velocities = 0.005 * torch.randn(fused_batch.velocities.shape, dtype=torch.float64)
    separate = fused_batch.clone()
    relax = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(0.05), n_steps=300)
    md = ENGINES[name]()
    md.n_steps = 15
    (relax + md).run(fused_batch)
    assert fused_batch.status.tolist() == [2, 2, 2]
    FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(0.05)).run(separate, n_steps=300)
    ENGINES[name]().run(separate, n_steps=15)
    torch.testing.assert_close(fused_batch.cell, separate.cell, rtol=0, atol=1e-11)
    torch.testing.assert_close(fused_batch.positions, separate.positions, rtol=0, atol=1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("isotropic", [True, False])
def test_mtk_conserves_its_energy_per_system_over_a_long_run(isotropic):
    batch = Batch.from_atoms([argon_bulk(1 + k % 2, seed=k, rattle=0.05) for k in range(3)], device="cpu")
    engine = MTKNPT(
        LennardJones(**ARGON), 1.0, TEMPERATURES, PRESSURES, tdamp=50.0, pdamp=300.0, isotropic=isotropic,
        initial_temperature=50.0, velocity_seed=0,
    )  # fmt: skip
    engine.run(batch, n_steps=1)
    start = engine.conserved_energy(batch).clone()
    volumes = []
    for _ in range(10):
        engine.run(batch, n_steps=50)
        volumes.append(torch.linalg.det(batch.cell).abs())
        drift = (engine.conserved_energy(batch) - start).abs()
        assert torch.all(drift < 5e-4), drift
    assert not np.allclose(volumes[0].numpy(), volumes[-1].numpy(), rtol=1e-4)  # the volume does move
