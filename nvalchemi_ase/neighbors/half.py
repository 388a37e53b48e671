"""A half neighbour list, derived from a full one: each pair once, for kernels that use Newton's third law.

A full list holds every pair twice, ``(i, j, S)`` and ``(j, i, -S)``. The half
list keeps the one whose neighbour comes first in the batch, ``j < i``; of an
atom's own images (``j == i``, a cell smaller than the cutoff) it keeps the one
whose shift is lexicographically positive. So every partner a row writes to
is an earlier row of its own system: a kernel that walks a system's rows in
order finds each row untouched by the others until its own turn (see
:mod:`nvalchemi_ase.models.pair_half_kernel`).

It is made once per list (one warp kernel over the full list's slots, rows
split over torch's threads on a CPU), with each kept pair's image vector in
Å, for lists that serve many steps (:attr:`~nvalchemi_ase.neighbors.Neighbors.reused`).
Taking the half from the full list costs one pass over the listed slots at
each rebuild; the full list stays what every other consumer (EMT, the graph
models, the torch path) reads.
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
def _kernel() -> Any:
    @wp.kernel(enable_backward=False)
    def half_rows(
        first: wp.int32,
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        half_matrix: wp.array2d(dtype=wp.int32),
        half_images: wp.array2d(dtype=wp.vec3d),
        half_counts: wp.array(dtype=wp.int32),
        lowest: wp.array(dtype=wp.int32),
    ):
        i = first + wp.tid()
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        kept = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        low = i
        for k in range(wp.min(counts[i], matrix.shape[1])):
            j = matrix[i, k]
            s = shifts[i, k]
            if _first_of_pair(i, j, s):
                half_matrix[i, kept] = j
                half_images[i, kept] = image_vector(s, a1, a2, a3)
                low = wp.min(low, j)
                kept += 1
        half_counts[i] = kept
        lowest[i] = low

    return half_rows


class HalfList:
    """Each pair of a full list once (``j < i``), with its image vector.

    Attributes
    ----------
    matrix, counts
        int32 ``[N, K]`` neighbours (the first ``counts[i]`` slots of row ``i``
        are real) and ``[N]`` their number.
    images
        ``[N, K, 3]`` float64 ``S @ cell`` of each kept pair, Å.
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
        images: torch.Tensor,
        lowest: torch.Tensor,
        system_starts: np.ndarray,
    ) -> None:
        self.matrix, self.counts, self.images, self.lowest = matrix, counts, images, lowest
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
    """The half of a full list: its raw int32 ``matrix`` ``[N, K]``, ``shifts`` ``[N, K, 3]``, ``counts``."""
    n, width = matrix.shape
    device = matrix.device
    half_matrix = torch.empty(n, width, dtype=torch.int32, device=device)
    half_images = torch.empty(n, width, 3, dtype=torch.float64, device=device)
    half_counts = torch.empty(n, dtype=torch.int32, device=device)
    lowest = torch.empty(n, dtype=torch.int32, device=device)
    cell = float64_tensor(cell)  # held while the kernel runs (a view holds no tensor)
    inputs = [
        descriptor(matrix),
        descriptor(counts),
        descriptor(shifts, wp.vec3i),
        descriptor(cell, wp.vec3d),
        descriptor(batch_idx),
        descriptor(half_matrix),
        descriptor(half_images, wp.vec3d),
        descriptor(half_counts),
        descriptor(lowest),
    ]
    launch(_kernel(), n, inputs, device)
    return HalfList(half_matrix, half_counts, half_images, lowest, _system_starts(batch_idx))


def _system_starts(batch_idx: torch.Tensor) -> np.ndarray:
    """Host ``[B + 1]`` first row of each system, then ``N`` (rows of a system are contiguous)."""
    systems = batch_idx.cpu().numpy()
    starts = np.flatnonzero(np.diff(systems)) + 1
    return np.concatenate(([0], starts, [systems.size])).astype(np.int64)
