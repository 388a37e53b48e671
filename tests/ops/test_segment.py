"""Segment reductions against explicit per-segment loops; row sums against torch's reduction."""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.ops import segment_broadcast, segment_max, segment_min, segment_sum, xyz_sum


def _data():
    generator = torch.Generator().manual_seed(0)
    index = torch.tensor([0, 0, 1, 3, 3, 3])  # segment 2 is empty
    values = torch.randn(6, 3, generator=generator, dtype=torch.float64)
    return values, index


def test_segment_sum_equals_loop():
    values, index = _data()
    out = segment_sum(values, index, 4)
    for s in range(4):
        torch.testing.assert_close(out[s], values[index == s].sum(dim=0))


def test_segment_max_and_min_equal_loop_and_mark_empty_segments():
    values, index = _data()
    high, low = segment_max(values, index, 4), segment_min(values, index, 4)
    for s in (0, 1, 3):
        torch.testing.assert_close(high[s], values[index == s].max(dim=0).values)
        torch.testing.assert_close(low[s], values[index == s].min(dim=0).values)
    assert (high[2] == torch.finfo(torch.float64).min).all() and (
        low[2] == torch.finfo(torch.float64).max
    ).all()


def test_segment_max_of_booleans_is_any():
    flags = torch.tensor([False, True, False, False])
    assert segment_max(flags, torch.tensor([0, 0, 1, 2]), 3).tolist() == [True, False, False]


def test_segment_broadcast_gives_each_member_its_segments_row():
    _, index = _data()
    per_segment = torch.arange(4 * 2 * 3, dtype=torch.float64).view(4, 2, 3)
    rows = segment_broadcast(per_segment, index)
    assert rows.shape == (6, 2, 3)
    for member, segment in enumerate(index.tolist()):
        assert torch.equal(rows[member], per_segment[segment])
    flags = torch.tensor([True, False, False, True])
    assert segment_broadcast(flags, index).tolist() == [True, True, False, True, True, True]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_xyz_sum_gives_the_reduction_bits_and_gradient(dtype):
    generator = torch.Generator().manual_seed(3)
    scale = torch.logspace(-12, 12, 4001, dtype=torch.float64).to(dtype).unsqueeze(1)
    vectors = (torch.randn(4001, 3, generator=generator, dtype=dtype) * scale).requires_grad_(True)
    ours, theirs = xyz_sum(vectors), vectors.sum(dim=1)
    assert torch.equal(ours, theirs)
    weights = torch.randn(4001, generator=generator, dtype=dtype)
    (ours_grad,) = torch.autograd.grad((ours * weights).sum(), vectors)
    (their_grad,) = torch.autograd.grad((theirs * weights).sum(), vectors)
    assert torch.equal(ours_grad, their_grad)
    other = torch.randn(5, 4, generator=generator, dtype=dtype)  # not Cartesian rows: the reduction itself
    assert torch.equal(xyz_sum(other), other.sum(dim=1))
