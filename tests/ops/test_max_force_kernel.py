"""ASE's fmax per system from the kernel: numpy's bits, NaN kept, empty systems 0."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.ops import max_force_kernel
from nvalchemi_ase.ops.thermo import max_force


def _case(seed: int):
    generator = torch.Generator().manual_seed(seed)
    counts = torch.tensor([3, 0, 7, 1, 12])
    ptr = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)])
    forces = torch.randn(int(counts.sum()), 3, generator=generator, dtype=torch.float64) * 10.0 ** (seed - 2)
    batch_idx = torch.repeat_interleave(torch.arange(len(counts)), counts)
    return forces, ptr, batch_idx


@pytest.mark.parametrize("seed", range(5))
def test_fmax_is_numpys_norm_maximum_bit_for_bit(seed):
    forces, ptr, batch_idx = _case(seed)
    got = max_force_kernel.max_force(forces, ptr)
    for b in range(len(ptr) - 1):
        rows = forces[ptr[b] : ptr[b + 1]].numpy()
        expected = np.linalg.norm(rows, axis=1).max() if len(rows) else 0.0  # ASE's fmax
        assert got[b].item() == expected
    torch.testing.assert_close(got, max_force(forces, batch_idx, len(ptr) - 1), rtol=1e-15, atol=0)
    assert torch.equal(max_force(forces, batch_idx, len(ptr) - 1, ptr), got)  # given ptr: the kernel


def test_a_nan_force_gives_nan_wherever_it_is():
    forces, ptr, _ = _case(0)
    for row in (3, 9):  # first and last atom of system 2
        poisoned = forces.clone()
        poisoned[row, 1] = float("nan")
        got = max_force_kernel.max_force(poisoned, ptr)
        assert torch.isnan(got[2]) and not torch.isnan(got[[0, 1, 3, 4]]).any()


def test_kernel_declines_what_it_does_not_take():
    forces, _, _ = _case(0)
    assert max_force_kernel.fits(forces)
    assert not max_force_kernel.fits(forces.float())
    assert not max_force_kernel.fits(forces.t().contiguous().t())
    assert not max_force_kernel.fits(forces.requires_grad_())
