"""The convergence bookkeeping kernel: torch's flag updates and answers, step after step."""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.tracking_kernel import Tracker, fits


def test_marks_and_answers_as_the_torch_operations_do_over_many_steps():
    generator = torch.Generator().manual_seed(0)
    tracker = Tracker()
    converged, newly = torch.zeros(37, dtype=torch.bool), torch.zeros(37, dtype=torch.bool)
    expected_converged, expected_newly = converged.clone(), newly.clone()
    answers = set()
    for step in range(60):
        now = torch.rand(37, generator=generator) < 0.03 * step  # more pass as the run goes on
        any_new, all_done = tracker.mark(now, converged, newly)
        expected_newly |= now & ~expected_converged
        expected_converged |= now
        assert torch.equal(converged, expected_converged) and torch.equal(newly, expected_newly)
        assert (any_new, all_done) == (int(expected_newly.any()), int(expected_converged.all()))
        answers.add((any_new, all_done))
        if step % 7 == 0:  # the engine's ON_CONVERGE check hands the newly converged on
            newly.zero_()
            expected_newly.zero_()
    assert answers == {(0, 0), (1, 0), (1, 1), (0, 1)}  # every answer came up
    # another batch size (a new batch bound to the engine): its own flags
    converged, newly = torch.zeros(5, dtype=torch.bool), torch.zeros(5, dtype=torch.bool)
    now = torch.tensor([True, False, True, False, False])
    assert tracker.mark(now, converged, newly) == (1, 0)
    assert torch.equal(converged, now) and torch.equal(newly, now)


def test_fits_only_contiguous_cpu_booleans():
    flags = torch.zeros(8, dtype=torch.bool)
    assert fits(flags, flags)
    assert not fits(flags, torch.zeros(8, dtype=torch.uint8))
    assert not fits(torch.zeros(8, 2, dtype=torch.bool)[:, 0])
