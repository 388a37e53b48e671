"""The CPU skin kernel: the neighbour list's "did any atom move past skin / 2?" against the torch test."""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors import NeighborList
from nvalchemi_ase.neighbors.skin import moved_beyond_skin
from nvalchemi_ase.ops import kernel_threads, skin_kernel, xyz_sum
from tests.structures import ragged_systems


def torch_test(positions: torch.Tensor, reference: torch.Tensor, limit: float) -> bool:
    return bool((xyz_sum((positions - reference).square()) > limit**2).any())


@pytest.mark.parametrize("moved", [None, 0, 250, 499])
def test_the_kernel_answers_as_the_torch_test_to_the_last_bit(moved):
    generator = torch.Generator().manual_seed(3)
    reference = torch.randn(500, 3, generator=generator, dtype=torch.float64) * 10.0
    positions = reference + torch.randn(500, 3, generator=generator, dtype=torch.float64) * 0.01
    limit = 0.25
    if moved is not None:  # one atom exactly at the limit (not past it), then just past it
        positions[moved] = reference[moved] + torch.tensor([limit, 0.0, 0.0], dtype=torch.float64)
        flag = torch.zeros(1, dtype=torch.int32)
        assert skin_kernel.any_moved_past(positions, reference, limit, flag) is torch_test(
            positions, reference, limit
        )
        positions[moved, 0] = torch.nextafter(positions[moved, 0], torch.tensor(1e9, dtype=torch.float64))
    flag = torch.ones(1, dtype=torch.int32)  # a stale answer is cleared
    answer = skin_kernel.any_moved_past(positions, reference, limit, flag)
    assert answer is torch_test(positions, reference, limit) is (moved is not None)


def test_rows_split_over_threads_give_the_same_answer(monkeypatch):
    generator = torch.Generator().manual_seed(4)
    reference = torch.randn(301, 3, generator=generator, dtype=torch.float64)
    positions = reference.clone()
    positions[300, 2] += 0.3  # in the last share
    pools = []
    real_workers = kernel_threads.workers
    monkeypatch.setattr(kernel_threads, "workers", lambda count: pools.append(count) or real_workers(count))
    monkeypatch.setattr(skin_kernel, "ROWS_PER_THREAD", 16)
    saved = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        flag = torch.zeros(1, dtype=torch.int32)
        assert skin_kernel.any_moved_past(positions, reference, 0.25, flag)
        assert not skin_kernel.any_moved_past(reference, reference, 0.25, flag)
    finally:
        torch.set_num_threads(saved)
    assert pools == [2, 2]


def test_the_kernel_takes_only_what_it_can_read():
    positions = torch.zeros(4, 3, dtype=torch.float64)
    assert skin_kernel.fits(positions, positions.clone())
    assert not skin_kernel.fits(positions.float(), positions.float())
    assert not skin_kernel.fits(positions, torch.zeros(5, 3, dtype=torch.float64))
    assert not skin_kernel.fits(positions.T.contiguous().T, positions)  # not contiguous
    assert not skin_kernel.fits(positions.clone().requires_grad_(True), positions)


def test_the_neighbour_list_asks_the_kernel_on_a_cpu_and_rebuilds_when_it_says_so(monkeypatch):
    batch = Batch.from_atoms(ragged_systems(), device="cpu")
    listed = NeighborList(6.0, skin=0.5)
    listed.update(batch)
    asked = []
    real = skin_kernel.any_moved_past
    monkeypatch.setattr(skin_kernel, "any_moved_past", lambda *args: asked.append(args[2]) or real(*args))
    before = listed.rebuilds
    batch.positions = batch.positions + 0.1  # within skin / 2
    listed.update(batch)
    assert listed.rebuilds == before and asked == [0.25]
    batch.positions = batch.positions.clone()
    batch.positions[3, 1] += 0.2  # that atom is now √0.11 ≈ 0.33 Å from its reference, past 0.25
    listed.update(batch)
    assert listed.rebuilds > before and len(asked) > 1  # its system, and those near their limit


def _ragged_state(seed: int = 5) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    counts = torch.tensor([7, 1, 30, 12, 5])
    batch_idx = torch.repeat_interleave(torch.arange(5), counts)
    reference = torch.randn(int(counts.sum()), 3, generator=generator, dtype=torch.float64) * 5.0
    positions = reference + torch.randn(reference.shape, generator=generator, dtype=torch.float64) * 0.05
    positions[7] += 0.3  # system 1 (its one atom) and system 3 move past 0.25 Å; the rest stay within
    positions[45, 2] -= 0.4
    return positions, reference, batch_idx


def test_the_systems_that_moved_are_the_torch_tests_and_the_cell_still_counts():
    positions, reference, batch_idx = _ragged_state()
    cell = torch.eye(3, dtype=torch.float64).repeat(5, 1, 1) * 20.0
    strained = cell.clone()
    strained[4, 0, 1] = 0.1
    for now_cell in (cell, strained):
        ours = moved_beyond_skin(positions, reference, now_cell, cell, batch_idx, 0.5)
        displacement_sq = xyz_sum((positions - reference).square())
        largest = torch.stack([displacement_sq[batch_idx == b].max() for b in range(5)])
        expected = (largest > 0.25**2) | (now_cell != cell).flatten(1).any(dim=1)
        assert torch.equal(ours, expected) and ours.dtype == torch.bool
    assert moved_beyond_skin(positions, reference, cell, cell, batch_idx, 0.5).tolist() == [
        False, True, False, True, False,
    ]  # fmt: skip


def test_rebased_reference_takes_the_rebuilt_systems_rows_and_keeps_the_others():
    positions, reference, batch_idx = _ragged_state()
    rebuilt = torch.tensor([True, False, False, True, True])
    ours = skin_kernel.rebased(positions, reference, batch_idx, rebuilt)
    assert torch.equal(ours, torch.where(rebuilt[batch_idx].unsqueeze(1), positions, reference))
    assert ours.data_ptr() not in (positions.data_ptr(), reference.data_ptr())  # a new tensor
