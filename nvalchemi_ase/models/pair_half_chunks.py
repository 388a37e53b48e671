"""One large system's half-list pair sums in chunks: each chunk into buffers of its own, added in order.

A system of more than :data:`~nvalchemi_ase.models.pair_half_kernel.LARGE_SYSTEM`
rows holding a quarter of the batch is cut into a fixed number of chunks of
about equal visits (:mod:`~nvalchemi_ase.models.pair_half_kernel` makes the
plan). A chunk's rows write to their partners, earlier rows that may lie in an
earlier chunk: so each chunk sums into buffers of its own, cleared from its
lowest partner up to its first row, and a last pass over the rows adds the
chunks' sums in chunk order. The threads take whole chunks; the bits do not
depend on how many there are.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops import warp_launch
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.verlet_kernel import SecondKick, kick
from nvalchemi_ase.ops.warp_launch import descriptor, float64_scalar, launch_shares

if TYPE_CHECKING:
    from nvalchemi_ase.models.pair_half_kernel import Plan

wp = initialised_warp()

TOTALS_ROWS_PER_THREAD = 1 << 16
"""Rows of the chunks' last pass below which one thread does it all."""


@functools.cache
def chunk_kernels(with_virials: bool, kicks: bool = False) -> tuple[Any, Any]:
    """``(clear, total)``: a chunk's buffers zeroed below its rows; the chunks' sums added in order
    (and, with ``kicks``, the velocities kicked by the summed forces: see ``SecondKick``)."""

    @wp.kernel(enable_backward=False)
    def clear_below(
        first: wp.int32,
        chunk: wp.int32,
        energies: wp.array2d(dtype=wp.float64),
        forces: wp.array2d(dtype=wp.vec4d),
        virials: wp.array2d(dtype=wp.mat33d),
    ):
        i = first + wp.tid()
        energies[chunk, i] = wp.float64(0.0)
        forces[chunk, i] = wp.vec4d()
        if wp.static(with_virials):
            virials[chunk, i] = wp.mat33d()

    @wp.kernel(enable_backward=False)
    def chunk_totals(
        first: wp.int32,
        starts: wp.array(dtype=wp.int32),
        cleared: wp.array(dtype=wp.int32),
        energies: wp.array2d(dtype=wp.float64),
        forces: wp.array2d(dtype=wp.vec4d),
        virials: wp.array2d(dtype=wp.mat33d),
        energies_out: wp.array(dtype=wp.float64),
        forces_out: wp.array(dtype=wp.vec3d),
        virials_out: wp.array(dtype=wp.mat33d),
        velocities: wp.array(dtype=wp.vec3d),
        masses: wp.array(dtype=wp.float64),
        half_dt: wp.float64,
        kicked: wp.array(dtype=wp.vec3d),
    ):
        i = first + wp.tid()
        c = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        while starts[c + 1] <= i:  # the chunk of this row: it set these slots
            c += 1
        energy = energies[c, i]
        force = forces[c, i]
        virial = wp.mat33d()
        if wp.static(with_virials):
            virial = virials[c, i]
        c += 1
        while c < starts.shape[0] - 1:  # later chunks, in order, where they wrote (cleared rows)
            if i >= cleared[c]:
                energy += energies[c, i]
                force += forces[c, i]
                if wp.static(with_virials):
                    virial += virials[c, i]
            c += 1
        energies_out[i] = energy
        summed = wp.vec3d(force[0], force[1], force[2])
        forces_out[i] = summed
        if wp.static(with_virials):
            virials_out[i] = virial
        if wp.static(kicks):
            kicked[i] = kick(velocities[i], summed, masses[i], half_dt)

    return clear_below, chunk_totals


def chunked_sums(
    kernel: Any,
    plan: Plan,
    common: list[Any],
    outputs: list[Any],
    n: int,
    with_virials: bool,
    device: torch.device,
    second_kick: SecondKick | None,
) -> None:
    """One large system: each chunk sums into its own buffers (cleared below its rows), added in order
    by a last pass over the rows, which also does ``second_kick`` when there is one."""
    assert plan.starts is not None and plan.cleared is not None
    chunks = plan.starts.shape[0] - 1
    parts = [
        _CHUNK_ENERGIES.take((chunks, n), torch.float64, device),
        _CHUNK_FORCES.take((chunks, n, 4), torch.float64, device),
        _CHUNK_VIRIALS.take((chunks, n, 3, 3), torch.float64, device)
        if with_virials
        else _no_chunk_virials(),
    ]
    clear, total = chunk_kernels(with_virials, second_kick is not None)
    buffers = [view(parts[0]), view(parts[1], wp.vec4d), view(parts[2], wp.mat33d)]
    cleared = plan.cleared_rows
    key = (*(part.data_ptr() for part in parts), with_virials)
    chunk_views = plan.chunk_views.get(key)
    if chunk_views is None:  # the pools hand out the same buffers call after call: views made once
        chunk_views = plan.chunk_views[key] = [
            [
                descriptor(parts[0][c]),
                descriptor(parts[1][c], wp.vec4d),
                descriptor(parts[2][c], wp.mat33d) if with_virials else outputs[2],
            ]
            for c in range(chunks)
        ]
    shares = []
    for share in plan.shares:
        launches = []
        for first, count, c in share:
            if first > cleared[c]:
                launches.append((clear, cleared[c], first - cleared[c], [plan.chunk_numbers[c], *buffers]))
            launches.append((kernel, first, count, common + chunk_views[c]))
        shares.append(launches)
    launch_shares(shares, device)
    bounds = [view(plan.starts), view(plan.cleared)]
    # a pass over memory: a second thread's wake-up costs more than it saves (0.18 against 0.06 ms
    # for 4,000 atoms)
    if second_kick is None:  # arrays of the right types that the kernel without kicks never reads
        kicks = [outputs[1], outputs[0], float64_scalar(0.0), outputs[1]]
    else:
        kicks, second_kick.taken = second_kick.arguments(), True
    inputs = bounds + buffers + outputs + kicks
    warp_launch.launch(total, n, inputs, device, rows_per_thread=TOTALS_ROWS_PER_THREAD)


_CHUNK_ENERGIES, _CHUNK_FORCES, _CHUNK_VIRIALS = Buffers(1), Buffers(1), Buffers(1)


@functools.cache
def _no_chunk_virials() -> torch.Tensor:
    """The chunks' virial buffers when no virials are summed (never read: no data)."""
    return torch.empty(0, 0, 3, 3, dtype=torch.float64)
