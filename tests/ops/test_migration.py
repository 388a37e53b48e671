"""The fused stage's bookkeeping kernel against the rules written out system by system."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.ops.migration import migrate

NO_BUDGET = torch.iinfo(torch.long).max


def _by_hand(status, steps, unconverged, done, awaiting, budgets, hooked):
    """The rules of ``nvalchemi_ase.ops.migration``, one system at a time in plain Python."""
    stages = len(budgets)
    new_status, new_steps, new_unconverged, leaving = [], [], [], []
    for b in range(len(status)):
        s, step = status[b], steps[b] + 1
        waiting = awaiting is not None and awaiting[b]
        converged = done is not None and done[b]
        current = min(s, stages - 1)
        out = s < stages and not waiting and step >= budgets[current] and not converged
        moves = converged or out
        new_unconverged.append(unconverged[b] or (out and hooked[current]))
        leaving.append(moves)
        new_status.append(s + moves)
        new_steps.append(0 if moves or waiting else step)
    population = np.bincount(new_status, minlength=stages + 1).tolist()
    return new_status, new_steps, new_unconverged, leaving, population


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("with_done", [True, False])
@pytest.mark.parametrize("with_awaiting", [True, False])
def test_kernel_follows_the_rules(seed, with_done, with_awaiting):
    rng = np.random.default_rng(seed)
    systems, stages = 37, 3
    status = rng.integers(0, stages + 1, systems)
    steps = rng.integers(0, 6, systems)
    budgets = [4, NO_BUDGET, 5]
    hooked = [True, False, bool(seed % 2)]
    unconverged = rng.random(systems) < 0.2
    done = (rng.random(systems) < 0.3) & (status < stages) if with_done else None
    awaiting = (rng.random(systems) < 0.3) & (status == 0) if with_awaiting else None
    if done is not None and awaiting is not None:
        done &= ~awaiting  # a system that awaited its forces is no sub-stage's member: it cannot converge
    moved = migrate(
        torch.as_tensor(status),
        torch.as_tensor(steps),
        torch.as_tensor(unconverged),
        None if done is None else torch.as_tensor(done),
        None if awaiting is None else torch.as_tensor(awaiting),
        torch.tensor(budgets),
        torch.tensor(hooked),
    )
    expected = _by_hand(
        status.tolist(), steps.tolist(), unconverged.tolist(),
        None if done is None else done.tolist(), None if awaiting is None else awaiting.tolist(),
        budgets, hooked,
    )  # fmt: skip
    got = [t.tolist() for t in moved]
    assert got == [list(e) for e in expected]
    assert 0 < sum(expected[3]) < systems  # some systems moved on, some stayed
