"""A half neighbour list, derived from a full one: each pair once, for kernels that use Newton's third law.

A full list holds every pair twice, ``(i, j, S)`` and ``(j, i, -S)``. The half
list keeps the one whose neighbour comes first in the batch, ``j < i``; of an
atom's own images (``j == i``, a cell smaller than the cutoff) it keeps the one
whose shift is lexicographically positive. So every partner a row writes to
is an earlier row of its own system: a kernel that walks a system's rows in
order finds each row untouched by the others until its own turn (see
:mod:`nvalchemi_ase.models.pair_half_kernel`).

It is made once per list (warp kernels over the full list's slots, rows split
over torch's threads on a CPU), for lists that serve many steps
(:attr:`~nvalchemi_ase.neighbors.Neighbors.reused`). Each kept pair's image
vector ``S @ cell`` is not stored per pair but once per system and shift, in a
small table (each system's shifts within its largest one, ``(2R + 1)³`` rows),
which the pair's int32 slot indexes: a visit streams 8 bytes instead of 28,
and the table stays in the core's first-level cache. The table's vectors are
made with the kernels' own arithmetic, ``(s₀·a₁ + s₁·a₂) + s₂·a₃``, so pair
vectors keep their bits. Taking the half from the full list costs two passes
over the listed slots at each rebuild; the full list stays what every other
consumer (EMT, the graph models, the torch path) reads.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.warp_launch import descriptor, launch

wp = initialised_warp()


@wp.func
def _first_of_pair(i: wp.int32, j: wp.int32, s: wp.vec3i) -> bool:
    """Whether ``(i, j, s)`` is the listed one of the pair ``(i, j, s)`` / ``(j, i, -s)``."""
    if j != i:
        return j < i
    if s[0] != 0:
        return s[0] > 0
    if s[1] != 0:
        return s[1] > 0
    return s[2] > 0


@functools.cache
def _kernels() -> tuple[Any, Any]:
    """``(row_reach, half_rows)``: each row's largest shift component; each row's half, table slots."""

    @wp.kernel(enable_backward=False)
    def row_reach(
        first: wp.int32,
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        reach: wp.array(dtype=wp.int32),
    ):
        i = first + wp.tid()
        largest = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        for k in range(wp.min(counts[i], shifts.shape[1])):
            s = shifts[i, k]
            largest = wp.max(largest, wp.max(wp.abs(s[0]), wp.max(wp.abs(s[1]), wp.abs(s[2]))))
        reach[i] = largest

    @wp.kernel(enable_backward=False)
    def half_rows(
        first: wp.int32,
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        batch_idx: wp.array(dtype=wp.int64),
        system_reach: wp.array(dtype=wp.int32),
        table_start: wp.array(dtype=wp.int32),
        half_matrix: wp.array2d(dtype=wp.int32),
        half_slots: wp.array2d(dtype=wp.int32),
        half_counts: wp.array(dtype=wp.int32),
        lowest: wp.array(dtype=wp.int32),
    ):
        i = first + wp.tid()
        b = batch_idx[i]
        r = system_reach[b]
        side = 2 * r + 1
        start = table_start[b]
        kept = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        low = i
        for k in range(wp.min(counts[i], matrix.shape[1])):
            j = matrix[i, k]
            s = shifts[i, k]
            if _first_of_pair(i, j, s):
                half_matrix[i, kept] = j
                half_slots[i, kept] = start + ((s[0] + r) * side + (s[1] + r)) * side + (s[2] + r)
                low = wp.min(low, j)
                kept += 1
        half_counts[i] = kept
        lowest[i] = low

    return row_reach, half_rows


class HalfList:
    """Each pair of a full list once (``j < i``), with its image vector.

    Attributes
    ----------
    matrix, counts
        int32 ``[N, K]`` neighbours (the first ``counts[i]`` slots of row ``i``
        are real) and ``[N]`` their number.
    slots, table
        int32 ``[N, K]``: each kept pair's row of ``table`` (``[T, 3]`` float64,
        Å), its image vector ``S @ cell``.
    lowest
        int32 ``[N]``: each row's lowest partner (the row itself when it has none).
    system_starts
        Host ``[B + 1]`` int64 first rows of the systems, then ``N``.
    plans
        Free for a kernel's launch plans made from this list (keyed as it likes).
    """

    def __init__(
        self,
        matrix: torch.Tensor,
        counts: torch.Tensor,
        slots: torch.Tensor,
        table: torch.Tensor,
        lowest: torch.Tensor,
        system_starts: np.ndarray,
    ) -> None:
        self.matrix, self.counts, self.slots, self.table = matrix, counts, slots, table
        self.lowest = lowest
        self.system_starts = system_starts
        self.plans: dict[Any, Any] = {}

    @functools.cached_property
    def host_counts(self) -> np.ndarray:
        """``counts`` on the host, int64 (read once: the list is a CPU list)."""
        return self.counts.cpu().numpy().astype(np.int64)


def half_list(
    matrix: torch.Tensor,
    shifts: torch.Tensor,
    counts: torch.Tensor,
    cell: torch.Tensor,
    batch_idx: torch.Tensor,
) -> HalfList:
    """The half of a full CPU list: its raw int32 ``matrix`` ``[N, K]``, ``shifts`` ``[N, K, 3]``,
    ``counts``."""
    n, width = matrix.shape
    device = matrix.device
    row_reach, half_rows = _kernels()
    starts = _system_starts(batch_idx)
    reach = torch.empty(n, dtype=torch.int32, device=device)
    launch(row_reach, n, [descriptor(counts), descriptor(shifts, wp.vec3i), descriptor(reach)], device)
    rows = reach.numpy()
    system_reach = np.maximum.reduceat(rows, starts[:-1]) if rows.size else np.zeros(0, np.int32)
    system_reach = np.where(starts[1:] > starts[:-1], system_reach, 0).astype(np.int32)
    sizes = (2 * system_reach.astype(np.int64) + 1) ** 3
    table_start = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int32)
    table = _image_table(
        cell.detach().cpu().numpy().astype(np.float64), system_reach, table_start, int(sizes.sum())
    )
    half_matrix = torch.empty(n, width, dtype=torch.int32, device=device)
    half_slots = torch.empty(n, width, dtype=torch.int32, device=device)
    half_counts = torch.empty(n, dtype=torch.int32, device=device)
    lowest = torch.empty(n, dtype=torch.int32, device=device)
    system_reach_t, table_start_t = torch.from_numpy(system_reach), torch.from_numpy(table_start)
    inputs = [
        descriptor(matrix),
        descriptor(counts),
        descriptor(shifts, wp.vec3i),
        descriptor(batch_idx),
        descriptor(system_reach_t),
        descriptor(table_start_t),
        descriptor(half_matrix),
        descriptor(half_slots),
        descriptor(half_counts),
        descriptor(lowest),
    ]
    launch(half_rows, n, inputs, device)
    return HalfList(half_matrix, half_counts, half_slots, torch.from_numpy(table), lowest, starts)


def _image_table(cell: np.ndarray, reach: np.ndarray, start: np.ndarray, size: int) -> np.ndarray:
    """``[T, 3]`` image vectors of every system's shifts within its reach, in the slots' order.

    ``(s₀·a₁ + s₁·a₂) + s₂·a₃`` elementwise in float64, the order of
    :func:`~nvalchemi_ase.neighbors.images.image_vector` (no fused multiply-add in
    numpy either): the same bits as the kernels made them per pair.
    """
    table = np.empty((size, 3), dtype=np.float64)
    for r in np.unique(reach):  # a few distinct reaches (usually one), not a loop over systems
        systems = np.flatnonzero(reach == r)
        grid = np.arange(-r, r + 1, dtype=np.float64)
        shifts = np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), axis=-1).reshape(-1, 1, 3)
        a1, a2, a3 = (cell[systems, k][None] for k in range(3))  # [1, S, 3]
        with np.errstate(all="ignore"):  # a non-finite cell gives NaN images, as in the kernels
            vectors = (shifts[..., 0:1] * a1 + shifts[..., 1:2] * a2) + shifts[..., 2:3] * a3  # [M, S, 3]
        rows = start[systems][None, :] + np.arange(shifts.shape[0])[:, None]
        table[rows.reshape(-1)] = vectors.reshape(-1, 3)
    return table


def _system_starts(batch_idx: torch.Tensor) -> np.ndarray:
    """Host ``[B + 1]`` first row of each system, then ``N`` (rows of a system are contiguous)."""
    systems = batch_idx.cpu().numpy()
    starts = np.flatnonzero(np.diff(systems)) + 1
    return np.concatenate(([0], starts, [systems.size])).astype(np.int64)
