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
small table (each system's shifts within its largest one, and a margin for one that
pairs across its faces: ``(2R + 1)³`` rows)
made by :func:`~nvalchemi_ase.neighbors.images.image_vector` itself, which the
pair's int32 slot indexes: a visit streams 8 bytes instead of 28, the table
stays in the core's first-level cache, and pair vectors keep their bits. Taking
the half from the full list costs two passes over the listed slots at each
rebuild; the full list stays what every other consumer (EMT, the graph models,
the torch path) reads.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import numpy as np
import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.neighbors.carry import row_ranges
from nvalchemi_ase.neighbors.images import image_vector
from nvalchemi_ase.ops.buffers import Buffers, index_list
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
def _kernels(indirect: bool = False) -> tuple[Any, Any, Any]:
    """``(row_reach, half_rows, image_table)``: each row's largest shift component; each row's half and
    its table slots; the table's image vectors. ``indirect``: launch row ``k`` works on row
    ``rows[k]`` (the rows of the systems a partial rebuild changed); else on row ``k``."""

    @wp.kernel(enable_backward=False)
    def row_reach(
        first: wp.int32,
        rows: wp.array(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        reach: wp.array(dtype=wp.int32),
    ):
        i = first + wp.tid()
        if wp.static(indirect):
            i = rows[i]
        largest = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        for k in range(wp.min(counts[i], shifts.shape[1])):
            s = shifts[i, k]
            largest = wp.max(largest, wp.max(wp.abs(s[0]), wp.max(wp.abs(s[1]), wp.abs(s[2]))))
        reach[i] = largest

    @wp.kernel(enable_backward=False)
    def half_rows(
        first: wp.int32,
        rows: wp.array(dtype=wp.int32),
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
        if wp.static(indirect):
            i = rows[i]
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
        rows: wp.array(dtype=wp.int32),
        table_system: wp.array(dtype=wp.int32),
        system_reach: wp.array(dtype=wp.int32),
        table_start: wp.array(dtype=wp.int32),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        table: wp.array(dtype=wp.vec4d),
    ):
        t = first + wp.tid()
        if wp.static(indirect):
            t = rows[t]
        b = table_system[t]
        r = system_reach[b]
        side = 2 * r + 1
        code = t - table_start[b]  # ((s0 + r) * side + (s1 + r)) * side + (s2 + r)
        s = wp.vec3i(code // (side * side) - r, (code // side) % side - r, code % side - r)
        v = image_vector(s, cell_rows[b, 0], cell_rows[b, 1], cell_rows[b, 2])
        table[t] = wp.vec4d(v[0], v[1], v[2], wp.float64(0.0))

    return row_reach, half_rows, image_table


class HalfList:
    """Each pair of a full list once (``j < i``), with its image vector.

    Attributes
    ----------
    matrix, counts
        int32 ``[N, K]`` neighbours (the first ``counts[i]`` slots of row ``i``
        are real) and ``[N]`` their number.
    slots, table
        int32 ``[N, K]``: each kept pair's row of ``table`` (``[T, 4]`` float64,
        Å), its image vector ``S @ cell`` as a padded row ``(x, y, z, 0)`` (the
        pair kernel's aligned loads).
    lowest
        int32 ``[N]``: each row's lowest partner (the row itself when it has none).
    system_starts
        Host ``[B + 1]`` int64 first rows of the systems, then ``N``.
    layout
        Where each system's part of ``table`` lies and the reach it was made for.
    plans
        Free for a kernel's launch plans made from this list (keyed as it likes),
        kept when :func:`updated_half` rewrites rows: the plan's maker tells from
        ``rewrites`` whether a plan still holds.
    rewrites
        How many times :func:`updated_half` rewrote rows of this list in place.
    """

    def __init__(
        self,
        matrix: torch.Tensor,
        counts: torch.Tensor,
        slots: torch.Tensor,
        table: torch.Tensor,
        lowest: torch.Tensor,
        system_starts: np.ndarray,
        layout: TableLayout,
    ) -> None:
        self.matrix, self.counts, self.slots, self.table = matrix, counts, slots, table
        self.lowest = lowest
        self.system_starts = system_starts
        self.layout = layout
        self.plans: dict[Any, Any] = {}
        self.rewrites = 0
        self._laid_out_for: tuple[torch.Tensor, int] | None = None
        """The ``batch_idx`` tensor (and its version) last found to have ``system_starts``."""

    def laid_out_as(self, batch_idx: torch.Tensor) -> bool:
        """Whether ``batch_idx`` puts the systems at ``system_starts`` (compared once per tensor)."""
        seen = self._laid_out_for
        if seen is not None and seen[0] is batch_idx and seen[1] == batch_idx._version:
            return True
        if not np.array_equal(_system_starts(batch_idx), self.system_starts):
            return False
        self._laid_out_for = (batch_idx, batch_idx._version)
        return True

    @functools.cached_property
    def host_counts(self) -> np.ndarray:
        """``counts`` on the host, int64 (read once per rewrite: the list is a CPU list)."""
        return self.counts.cpu().numpy().astype(np.int64)


class TableLayout(NamedTuple):
    """The image table's layout: per system its reach ``R`` (int32 ``[B]``; its shifts lie within
    ``±R``, its ``(2R + 1)³`` rows of the table start at ``table_start``, int32 ``[B]``); per table
    row its system (int32 ``[T]``)."""

    system_reach: torch.Tensor
    table_start: torch.Tensor
    table_system: torch.Tensor


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
    starts = _system_starts(batch_idx)
    reach = torch.empty(n, dtype=torch.int32, device=device)
    _launch(0, n, [descriptor(counts), descriptor(shifts, wp.vec3i), descriptor(reach)], None, device)
    system_reach = _system_reach(reach.numpy(), starts[:-1], starts[1:])
    system_reach += np.where(system_reach > 0, TABLE_MARGIN, 0).astype(np.int32)
    sizes = _table_sizes(system_reach)
    table_start = np.concatenate(([0], np.cumsum(sizes)[:-1])).astype(np.int32)
    layout = TableLayout(
        torch.from_numpy(system_reach),
        torch.from_numpy(table_start),
        torch.from_numpy(np.repeat(np.arange(sizes.size, dtype=np.int32), sizes)),
    )
    table = torch.empty(int(sizes.sum()), 4, dtype=torch.float64, device=device)
    half = HalfList(
        torch.empty(n, width, dtype=torch.int32, device=device),
        torch.empty(n, dtype=torch.int32, device=device),
        torch.empty(n, width, dtype=torch.int32, device=device),
        table,
        torch.empty(n, dtype=torch.int32, device=device),
        starts,
        layout,
    )
    _fill(half, matrix, shifts, counts, cell, batch_idx, None, None)
    return half


TABLE_MARGIN = 1
"""Images the table of a system that pairs across its faces reaches beyond its rows' largest shift.

Shifts are counted from the atoms' unwrapped positions, so an atom that crosses
its cell's face between rebuilds pairs one image farther out. A rebuilt system
whose shifts still fit its table is rewritten in place; one that outgrew it makes
the whole half list afresh (~1.4 ms against ~0.6 for 64 argon cells of 32 atoms).
On the fused benchmark's stream with a tail, 56 of 268 half lists were made afresh
for that reason without the margin, none with it. A 32-atom cell's table then
holds 125 images instead of 27 (4 kB of padded vectors). A system with no pair
across a face (a molecule, open or in a large box) keeps its one image: a batch of
many of them would otherwise hold 27 times the table."""


def updated_half(
    half: HalfList,
    matrix: torch.Tensor,
    shifts: torch.Tensor,
    counts: torch.Tensor,
    cell: torch.Tensor,
    batch_idx: torch.Tensor,
    systems: np.ndarray,
) -> HalfList | None:
    """``half`` rewritten in place for the full list's rows of ``systems`` (host int64 indices), the
    systems a partial rebuild changed: their rows, their part of the table (their cells may be new).

    None when that cannot be done and :func:`half_list` must make it afresh: another
    shape or system layout, or a rebuilt system whose shifts now reach past the table
    made for it. Between rebuilds of a few systems out of many this costs a fraction
    of deriving every row again.
    """
    starts = half.system_starts
    if half.matrix.shape != matrix.shape or not half.laid_out_as(batch_idx):
        return None
    if systems.size == 0:
        return half
    device = matrix.device
    rows = row_ranges(starts[systems], starts[systems + 1])
    rows_t = index_list(rows, matrix.shape[0])
    reach = _SCRATCH.take((matrix.shape[0],), torch.int32, device)
    inputs = [descriptor(counts), descriptor(shifts, wp.vec3i), descriptor(reach)]
    _launch(0, rows.size, inputs, rows_t, device)
    lengths = starts[systems + 1] - starts[systems]
    firsts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    new_reach = _system_reach(reach.numpy()[rows], firsts, firsts + lengths)
    layout = half.layout
    if np.any(new_reach > layout.system_reach.numpy()[systems]):
        return None
    table_first = layout.table_start.numpy()[systems].astype(np.int64)
    entries = row_ranges(table_first, table_first + _table_sizes(layout.system_reach.numpy()[systems]))
    listed = (rows_t, rows.size), (index_list(entries, half.table.shape[0]), entries.size)
    _fill(half, matrix, shifts, counts, cell, batch_idx, *listed)
    half.rewrites += 1
    half.__dict__.pop("host_counts", None)
    return half


def _fill(
    half: HalfList,
    matrix: torch.Tensor,
    shifts: torch.Tensor,
    counts: torch.Tensor,
    cell: torch.Tensor,
    batch_idx: torch.Tensor,
    rows: tuple[torch.Tensor, int] | None,
    entries: tuple[torch.Tensor, int] | None,
) -> None:
    """Write the image table (its ``entries``, or all) and the half rows (``rows``, or all): each a
    list of indices and how many of its first entries to use."""
    device = matrix.device
    layout = half.layout
    cell64 = float64_tensor(cell)  # held while the kernels run (a view holds no tensor)
    table_inputs = [descriptor(layout.table_system), descriptor(layout.system_reach)]
    table_inputs += [descriptor(layout.table_start), descriptor(cell64, wp.vec3d)]
    table_inputs += [descriptor(half.table, wp.vec4d)]
    table_rows = half.table.shape[0] if entries is None else entries[1]
    _launch(2, table_rows, table_inputs, None if entries is None else entries[0], device)
    inputs = [
        descriptor(matrix),
        descriptor(counts),
        descriptor(shifts, wp.vec3i),
        descriptor(batch_idx),
        descriptor(layout.system_reach),
        descriptor(layout.table_start),
        descriptor(half.matrix),
        descriptor(half.slots),
        descriptor(half.counts),
        descriptor(half.lowest),
    ]
    if rows is None:
        _launch(1, matrix.shape[0], inputs, None, device)
    else:
        _launch(1, rows[1], inputs, rows[0], device)


def _launch(
    which: int, count: int, inputs: list[Any], rows: torch.Tensor | None, device: torch.device
) -> None:
    """Launch kernel ``which`` of :func:`_kernels` over ``count`` rows, through ``rows`` when given."""
    kernel = _kernels(rows is not None)[which]
    launch(kernel, count, [descriptor(_NO_ROWS if rows is None else rows), *inputs], device)


_NO_ROWS = torch.zeros(1, dtype=torch.int32)
"""The row list of a direct launch (never read)."""

_SCRATCH = Buffers(count=2)
"""The row reaches of partial rewrites: the same tensor each time (its warp view found again)."""


def _table_sizes(system_reach: np.ndarray) -> np.ndarray:
    """int64 rows of the image table per system: every shift within its reach, ``(2R + 1)³``."""
    return (2 * system_reach.astype(np.int64) + 1) ** 3


def _system_reach(reach: np.ndarray, first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """int32 largest row reach per segment ``first[b]:end[b]`` of ``reach`` (0 for an empty one)."""
    if reach.size == 0:
        return np.zeros(first.size, np.int32)
    largest = np.maximum.reduceat(reach, np.minimum(first, reach.size - 1))
    return np.where(end > first, largest, 0).astype(np.int32)


def _system_starts(batch_idx: torch.Tensor) -> np.ndarray:
    """Host ``[B + 1]`` first row of each system, then ``N`` (rows of a system are contiguous)."""
    systems = batch_idx.cpu().numpy()
    starts = np.flatnonzero(np.diff(systems)) + 1
    return np.concatenate(([0], starts, [systems.size])).astype(np.int64)
