"""A fused stage's end-of-step bookkeeping as one warp kernel: who moves on, who ran out of steps.

Per system, with ``S`` sub-stages, its status ``s`` (``S``: finished), the
steps it has taken in its sub-stage, whether it converged in it this step
(``done``) and whether it awaited its forces (an inflight refill's new
system, which takes no step in the step that computes them)::

    steps ← steps + 1
    active       = s < S and not awaiting
    out of steps = active and steps ≥ budget[s] and not done
    unconverged ← unconverged or (out of steps and sub-stage s has a convergence hook)
    leaving      = done or out of steps
    s ← s + leaving;  steps ← 0 if leaving or awaiting
    population[s] += 1

Written with torch this is some twenty operations over ``[B]`` tensors a step,
each costing more than its arithmetic on a CPU; here it is one launch. Used by
:class:`~nvalchemi_ase.dynamics.fused.FusedStage` on a CPU and on CUDA alike.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.warp_launch import int32_scalar, launch

wp = initialised_warp()


@wp.kernel(enable_backward=False)
def _migrate(
    first: wp.int32,
    status: wp.array(dtype=wp.int64),
    steps: wp.array(dtype=wp.int64),
    done: wp.array(dtype=wp.bool),
    has_done: wp.int32,
    awaiting: wp.array(dtype=wp.bool),
    entering: wp.int32,
    unconverged: wp.array(dtype=wp.bool),
    budgets: wp.array(dtype=wp.int64),
    hooked: wp.array(dtype=wp.bool),
    new_status: wp.array(dtype=wp.int64),
    new_steps: wp.array(dtype=wp.int64),
    new_unconverged: wp.array(dtype=wp.bool),
    leaving: wp.array(dtype=wp.bool),
    population: wp.array(dtype=wp.int32),
):
    b = first + wp.tid()
    stages = wp.int64(budgets.shape[0])
    s = status[b]
    step = steps[b] + wp.int64(1)
    waiting = entering != 0 and awaiting[b]
    converged = has_done != 0 and done[b]
    current = wp.min(s, stages - wp.int64(1))
    out = s < stages and not waiting and step >= budgets[current] and not converged
    new_unconverged[b] = unconverged[b] or (out and hooked[current])
    moves = converged or out
    leaving[b] = moves
    if moves:
        s = s + wp.int64(1)
    new_status[b] = s
    if moves or waiting:
        new_steps[b] = wp.int64(0)
    else:
        new_steps[b] = step
    wp.atomic_add(population, wp.int32(s), 1)


class Migration(NamedTuple):
    """The new ``status``, ``stage_steps``, ``unconverged`` and ``leaving`` (``[B]``), and the
    ``population`` ``[S + 1]`` (int32: systems per status after the step)."""

    status: torch.Tensor
    stage_steps: torch.Tensor
    unconverged: torch.Tensor
    leaving: torch.Tensor
    population: torch.Tensor


def migrate(
    status: torch.Tensor,
    stage_steps: torch.Tensor,
    unconverged: torch.Tensor,
    done: torch.Tensor | None,
    awaiting: torch.Tensor | None,
    budgets: torch.Tensor,
    hooked: torch.Tensor,
) -> Migration:
    """One step's bookkeeping (see the module docstring), as new tensors.

    ``status``, ``stage_steps`` (int64), ``unconverged`` (bool) ``[B]``; ``done``
    ``[B]`` bool or None (no sub-stage tested convergence); ``awaiting`` ``[B]``
    bool or None (no system awaited its forces); ``budgets`` int64 and ``hooked``
    bool ``[S]`` per sub-stage (a budget of the largest int64: none).
    """
    device = status.device
    num = status.shape[0]
    placeholder = _placeholder(device)
    out = Migration(
        _OUTPUTS.like(status),
        _OUTPUTS.like(stage_steps),
        _OUTPUTS.like(unconverged),
        _OUTPUTS.like(unconverged),
        _OUTPUTS.take((budgets.shape[0] + 1,), torch.int32, device).zero_(),
    )
    inputs = [
        view(status),
        view(stage_steps),
        view(placeholder if done is None else done),
        int32_scalar(int(done is not None)),
        view(placeholder if awaiting is None else awaiting),
        int32_scalar(int(awaiting is not None)),
        view(unconverged),
        view(budgets),
        view(hooked),
        *(view(tensor) for tensor in out),
    ]
    launch(_migrate, num, inputs, device, rows_per_thread=1 << 30)  # one thread on a CPU: its atomics
    return out


_OUTPUTS = Buffers(count=6)
"""The kernel's outputs, a few tensors taking turns (their warp views and the recorded launch are
found again, where new tensors each step cost a re-recorded launch: ~0.1 ms on a CPU)."""


@functools.cache
def _placeholder(device: torch.device) -> torch.Tensor:
    """A flag array the kernel never reads (its ``has_`` argument is 0)."""
    return torch.zeros(1, dtype=torch.bool, device=device)
