"""On CUDA, the step loop runs without hidden device→host syncs (``set_sync_debug_mode("error")``).

Only hooks that must produce host output on a step may sync, and only on the
steps they fire; these runs use none, or fire them outside the checked window.
"""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, NVTLangevin
from nvalchemi_ase.dynamics.hooks import FreezeAtomsHook, MaxForceClampHook, NaNDetectorHook
from nvalchemi_ase.hooks import NeighborListHook, WrapPeriodicHook
from nvalchemi_ase.models import LennardJones
from tests.cuda import no_syncs
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}

pytestmark = pytest.mark.gpu


def _batch():
    return Batch.from_atoms([argon_bulk(2, seed=k) for k in range(8)], device="cuda")


@pytest.mark.parametrize(
    "engine",
    [
        lambda: NVE(LennardJones(**ARGON), dt=2.0),
        lambda: NVTLangevin(LennardJones(**ARGON), dt=2.0, temperature=100.0, friction=0.01, seed=0),
        lambda: NVE(
            LennardJones(**ARGON),
            dt=2.0,
            hooks=[
                NeighborListHook(8.5, skin=1.0),
                MaxForceClampHook(5.0),
                NaNDetectorHook(),  # its flag travels to the host without a sync
                FreezeAtomsHook(),
                WrapPeriodicHook(),
            ],
        ),
    ],
    ids=["nve", "langevin", "nve-with-hooks"],
)
def test_md_steps_do_not_sync(engine):
    batch = _batch()
    dynamics = engine()
    dynamics.run(batch, n_steps=3)  # set-up: lists sized, kernels loaded (may sync)
    with no_syncs():
        for _ in range(20):
            dynamics.step(batch)
    torch.cuda.synchronize()
    assert torch.isfinite(batch.positions).all()
