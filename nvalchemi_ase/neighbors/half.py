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
small table (each system's shifts within its largest one, ``(2R + 1)³`` rows)
made by :func:`~nvalchemi_ase.neighbors.images.image_vector` itself, which the
pair's int32 slot indexes: a visit streams 8 bytes instead of 28, the table
stays in the core's first-level cache, and pair vectors keep their bits. Taking
the half from the full list costs two passes over the listed slots at each
rebuild; the full list stays what every other consumer (EMT, the graph models,
the torch path) reads.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.neighbors.images import image_vector
from nvalchemi_ase.ops.warp_launch import descriptor, float64_tensor, launch

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
def _kernels() -> tuple[Any, Any, Any]:
    """``(row_reach, half_rows, image_table)``: each row's largest shift component; each row's half and
    its table slots; the table's image vectors."""

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

    @wp.kernel(enable_backward=False)
    def image_table(
        first: wp.int32,
        table_system: wp.array(dtype=wp.int32),
        system_reach: wp.array(dtype=wp.int32),
        table_start: wp.array(dtype=wp.int32),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        table: wp.array(dtype=wp.vec3d),
    ):
        t = first + wp.tid()
        b = table_system[t]
        r = system_reach[b]
        side = 2 * r + 1
        code = t - table_start[b]  # ((s0 + r) * side + (s1 + r)) * side + (s2 + r)
        s = wp.vec3i(code // (side * side) - r, (code // side) % side - r, code % side - r)
        table[t] = image_vector(s, cell_rows[b, 0], cell_rows[b, 1], cell_rows[b, 2])

    return row_reach, half_rows, image_table


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
    row_reach, half_rows, image_table = _kernels()
    starts = _system_starts(batch_idx)
    reach = torch.empty(n, dtype=torch.int32, device=device)
    launch(row_reach, n, [descriptor(counts), descriptor(shifts, wp.vec3i), descriptor(reach)], device)
    rows = reach.numpy()
    system_reach = np.maximum.reduceat(rows, starts[:-1]) if rows.size else np.zeros(0, np.int32)
    system_reach = np.where(starts[1:] > starts[:-1], system_reach, 0).astype(np.int32)
    sizes = (2 * system_reach.astype(np.int64) + 1) ** 3
    table_start = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int32)
    table = torch.empty(int(sizes.sum()), 3, dtype=torch.float64, device=device)
    table_system = torch.from_numpy(np.repeat(np.arange(sizes.size, dtype=np.int32), sizes))
    cell64 = float64_tensor(cell)  # held while the kernels run (a view holds no tensor)
    system_reach_t, table_start_t = torch.from_numpy(system_reach), torch.from_numpy(table_start)
    table_inputs = [descriptor(table_system), descriptor(system_reach_t), descriptor(table_start_t)]
    table_inputs += [descriptor(cell64, wp.vec3d), descriptor(table, wp.vec3d)]
    launch(image_table, table.shape[0], table_inputs, device)
    half_matrix = torch.empty(n, width, dtype=torch.int32, device=device)
    half_slots = torch.empty(n, width, dtype=torch.int32, device=device)
    half_counts = torch.empty(n, dtype=torch.int32, device=device)
    lowest = torch.empty(n, dtype=torch.int32, device=device)
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
    return HalfList(half_matrix, half_counts, half_slots, table, lowest, starts)


def _system_starts(batch_idx: torch.Tensor) -> np.ndarray:
    """Host ``[B + 1]`` first row of each system, then ``N`` (rows of a system are contiguous)."""
    systems = batch_idx.cpu().numpy()
    starts = np.flatnonzero(np.diff(systems)) + 1
    return np.concatenate(([0], starts, [systems.size])).astype(np.int64)
