"""On CUDA the NPT engines give the CPU's numbers (positions and cells)."""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.data import Batch
from tests.dynamics.test_npt_engines import ENGINES, _systems
from tests.tolerances import DEVICE_MATCH_ATOL

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_npt_engines_match_the_cpu(name):
    velocities = 0.005 * torch.randn(
        Batch.from_atoms(_systems()).velocities.shape, generator=torch.Generator().manual_seed(1)
    )
    final = {}
    for device in ("cpu", "cuda"):
        batch = Batch.from_atoms(_systems(), device=device)
        batch.velocities = velocities.to(device=device, dtype=batch.dtype)
        ENGINES[name]().run(batch, n_steps=30)
        final[device] = (batch.positions.cpu(), batch.cell.cpu())
    for cpu, cuda in zip(final["cpu"], final["cuda"], strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=0, atol=DEVICE_MATCH_ATOL)
