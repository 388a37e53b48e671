"""The neighbour list's per-step question on a CPU, "did any atom move past skin / 2?", as one warp kernel.

Asked with torch it is five operations over the atoms (a difference, squares,
two column adds, a comparison) and an ``any``. Past torch's grain of 32,768
elements those run on its OpenMP threads, which spin while idle and take cores
from the threads of our split launches (:mod:`~nvalchemi_ase.ops.kernel_threads`),
and the other way round: at 512 × 32 atoms the torch operations took 0.5 to
0.7 ms each in a FIRE run against tens of microseconds alone. Here one pass
over the rows, split over our own threads like every launch, sets a flag. The
squared distance is summed as ``(x² + y²) + z²``, the order of the torch test
and of the Verlet kernel's skin test.

On the steps that rebuild, the same goes for the per-system question (which
systems moved past it) and for the new reference positions (the rebuilt
systems' rows taken, the others kept): NVE of 512 × 32 argon atoms, 100 steps,
took 1.27 s with those in torch against 1.08 s with torch's threads told to
sleep when idle (``OMP_WAIT_POLICY=PASSIVE``), and the same either way when no
list was rebuilt.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import view
from nvalchemi_ase.ops.warp_launch import float64_scalar, launch

wp = initialised_warp()

ROWS_PER_THREAD = 32768
"""Rows below which one thread tests them all (a row is a few flops; a hand-off ~50 µs)."""


@wp.func
def past(r: wp.vec3d, reference: wp.vec3d, limit2: wp.float64) -> bool:
    """Whether ``r`` lies farther than ``√limit2`` from ``reference``: the skin test of every kernel
    (this module's and the Verlet kick-and-drift's), its squares summed as ``(x² + y²) + z²``."""
    d = r - reference
    return (d[0] * d[0] + d[1] * d[1]) + d[2] * d[2] > limit2


@functools.cache
def _moved_kernel(per_system: bool) -> Any:
    """Sets ``moved[0]``, or ``moved[system of the row]`` (``per_system``), for a row past the limit."""

    @wp.kernel(enable_backward=False)
    def moved_past(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        reference: wp.array(dtype=wp.vec3d),
        system: wp.array(dtype=wp.int64),
        limit2: wp.float64,
        moved: wp.array(dtype=wp.int32),
    ):
        i = first + wp.tid()
        if past(positions[i], reference[i], limit2):
            slot = 0
            if wp.static(per_system):
                slot = wp.int32(system[i])
            moved[slot] = 1  # every writer of a slot writes the same value: no race on the result

    return moved_past


@wp.kernel(enable_backward=False)
def _rebased(
    first: wp.int32,
    positions: wp.array(dtype=wp.vec3d),
    reference: wp.array(dtype=wp.vec3d),
    system: wp.array(dtype=wp.int64),
    rebuilt: wp.array(dtype=wp.bool),
    out: wp.array(dtype=wp.vec3d),
):
    i = first + wp.tid()
    if rebuilt[system[i]]:
        out[i] = positions[i]
    else:
        out[i] = reference[i]


_NO_SYSTEMS = torch.zeros(1, dtype=torch.int64)
"""The ``system`` argument of the any-atom test, which never reads it."""


def fits(positions: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether the kernel takes these: float64, contiguous, on a CPU, same shape, no autograd history."""
    return (
        positions.device.type == "cpu"
        and positions.dtype == reference.dtype == torch.float64
        and positions.shape == reference.shape
        and positions.is_contiguous()
        and reference.is_contiguous()
        and not positions.requires_grad
    )


def any_moved_past(
    positions: torch.Tensor, reference: torch.Tensor, limit: float, flag: torch.Tensor
) -> bool:
    """Whether any row of ``positions`` ``[N, 3]`` lies farther than ``limit`` from ``reference``'s.

    ``flag``: a one-element int32 CPU tensor the kernel writes (cleared here)."""
    host = flag.numpy()  # the same memory: cleared and read without a torch operation
    host[0] = 0
    _moved(positions, reference, _NO_SYSTEMS, limit, flag, per_system=False)
    return bool(host[0])


def systems_moved_past(
    positions: torch.Tensor, reference: torch.Tensor, batch_idx: torch.Tensor, num_systems: int, limit: float
) -> torch.Tensor:
    """``[B]`` bool: the systems with a row of ``positions`` farther than ``limit`` from ``reference``'s."""
    moved = torch.zeros(num_systems, dtype=torch.int32)
    _moved(positions, reference, batch_idx, limit, moved, per_system=True)
    return moved.bool()


def _moved(
    positions: torch.Tensor,
    reference: torch.Tensor,
    systems: torch.Tensor,
    limit: float,
    out: torch.Tensor,
    per_system: bool,
) -> None:
    """Launch :func:`_moved_kernel`: ``out`` flags (one, or one per system of ``systems``) set to 1."""
    inputs = [
        view(positions, wp.vec3d),
        view(reference, wp.vec3d),
        view(systems),
        float64_scalar(limit * limit),
    ]
    launch(
        _moved_kernel(per_system), positions.shape[0], [*inputs, view(out)], positions.device, ROWS_PER_THREAD
    )


def rebased(
    positions: torch.Tensor, reference: torch.Tensor, batch_idx: torch.Tensor, rebuilt: torch.Tensor
) -> torch.Tensor:
    """New ``[N, 3]`` reference positions: ``positions``' rows in the ``rebuilt`` ``[B]`` systems,
    ``reference``'s in the others (``torch.where`` over the systems' rows)."""
    out = torch.empty_like(reference)
    inputs = [
        view(positions, wp.vec3d),
        view(reference, wp.vec3d),
        view(batch_idx),
        view(rebuilt),
        view(out, wp.vec3d),
    ]
    launch(_rebased, positions.shape[0], inputs, positions.device, ROWS_PER_THREAD)
    return out
