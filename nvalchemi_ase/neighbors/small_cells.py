"""Neighbour rows of small systems on a CPU: every atom against every image of its system's atoms.

A cell list pays for its grid: on a CPU, ``nvalchemiops``' batched cell list
costs about 0.8 ms a call before any system is built, then ~8 µs an atom for
32-atom argon cells (rc 9 Å: one bin per axis, 27 images of 32 atoms to test
per atom, ~9 ns a candidate). A system whose atoms times images are few is
searched directly instead: each atom tests every atom of its system in every
periodic image within reach, a few nanoseconds a candidate, rows split over
torch's threads. An image whose lattice planes all lie farther than the search
radius from the atom holds no partner and is skipped (:func:`_beyond`): of the 27
images of a 108-atom argon cell at 9.5 Å an atom tests 11 on average, and a
rebuild of 64 such cells took 17 instead of 31 ms. Systems past
:data:`MAX_CANDIDATES` candidates an atom keep the cell list (its grid then saves
more than it costs).

The rows are the cell list's: ``(j, S)`` with pair vector
``positions[j] - positions[i] + S @ cell`` within the search radius, no atom
with itself unshifted, the slots past the room left as they are and the count
of every pair found (so a row that outgrew the room is seen). Within a row the
pairs come in a fixed order (images in lexicographic order, then atoms), so a
system's rows do not depend on its batch mates or on the threads.
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
from nvalchemi_ase.ops.warp_launch import descriptor, float64_scalar, launch

wp = initialised_warp()

MAX_CANDIDATES = 4096
"""Atoms times images above which a system's rows come from the cell list.

The cell list tests about 27 bins' worth of atoms per atom (~700 for argon at
rc 9 Å) at ~9 ns each; the direct search ~2 ns a candidate."""


MARGIN = 1e-9
"""Fractional slack in :func:`_beyond`: rounding in an atom's wrapped coordinates never hides a pair."""


@wp.func
def _beyond(s: wp.int32, f: wp.float64, spacing: wp.float64, radius: wp.float64) -> wp.bool:
    """Whether image ``s`` along an axis lies at least ``radius`` from an atom at fractional ``f``.

    The image's atoms, wrapped into the cell, lie between its lattice planes ``s`` and ``s + 1``
    (``spacing`` apart, in Å); an atom at ``f`` in ``[0, 1)`` is at least the distance to the nearer
    plane from any of them. Image 0 always stays; a NaN stays too (its pairs are none either way).
    """
    gap = wp.float64(0.0)
    if s > 0:
        gap = wp.float64(s) - f
    if s < 0:
        gap = f - wp.float64(s + 1)
    return (gap - wp.float64(MARGIN)) * spacing >= radius


@functools.cache
def _kernel() -> Any:
    @wp.kernel(enable_backward=False)
    def direct_rows(
        first: wp.int32,
        rows: wp.array(dtype=wp.int32),
        wrapped: wp.array(dtype=wp.vec3d),
        wraps: wp.array(dtype=wp.vec3i),
        fractions: wp.array(dtype=wp.vec3d),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        reach: wp.array(dtype=wp.vec3i),
        spacings: wp.array(dtype=wp.vec3d),
        ptr: wp.array(dtype=wp.int32),
        batch_idx: wp.array(dtype=wp.int32),
        radius: wp.float64,
        radius2: wp.float64,
        matrix: wp.array2d(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        counts: wp.array(dtype=wp.int32),
    ):
        i = rows[first + wp.tid()]
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        n = reach[b]
        h = spacings[b]
        start = ptr[b]
        stop = ptr[b + 1]
        here = wrapped[i]
        f = fractions[i]
        own = wraps[i]
        room = matrix.shape[1]
        found = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        for s0 in range(-n[0], n[0] + 1):
            if _beyond(s0, f[0], h[0], radius):  # no atom of these images within reach: skipped
                continue
            for s1 in range(-n[1], n[1] + 1):
                if _beyond(s1, f[1], h[1], radius):
                    continue
                for s2 in range(-n[2], n[2] + 1):
                    if _beyond(s2, f[2], h[2], radius):
                        continue
                    image = image_vector(wp.vec3i(s0, s1, s2), a1, a2, a3) - here
                    unshifted = s0 == 0 and s1 == 0 and s2 == 0
                    for j in range(start, stop):
                        d = wrapped[j] + image
                        if wp.dot(d, d) < radius2 and not (unshifted and j == i):
                            if found < room:
                                matrix[i, found] = j
                                # the shift between the true positions: the wrapped ones moved by whole cells
                                shifts[i, found] = wp.vec3i(s0, s1, s2) + own - wraps[j]
                            found += 1
        counts[i] = found

    return direct_rows


class SearchCells(NamedTuple):
    """Per system of a search cell, what the direct search needs: made once per cell (:func:`search_cells`).

    A rebuild of a few systems then prepares only their atoms; the cell's
    numbers (its normals, reach and plane spacings) are read, not computed again.
    """

    direct: np.ndarray
    """``[B]`` bool: the systems whose rows the direct search makes (few atoms times images)."""
    rows: torch.Tensor
    """``[B, 3, 3]`` float64: the cell rows."""
    crossed: np.ndarray
    """``[B, 3, 3]``: ``a_{k+1} x a_{k+2}``, the reciprocal rows times the volume."""
    volume: np.ndarray
    """``[B]``: ``a_0 . (a_1 x a_2)``."""
    periodic: np.ndarray
    """``[B, 3]`` bool: ``pbc``."""
    reach: torch.Tensor
    """``[B, 3]`` int32: images to search on each side along each axis (0 along open axes)."""
    spacings: torch.Tensor
    """``[B, 3]`` float64: Å between the lattice planes of each axis."""


def search_cells(cell: torch.Tensor, pbc: torch.Tensor, counts: np.ndarray, radius: float) -> SearchCells:
    """The direct search's numbers for every system of ``cell`` (the search cell, on the CPU:
    non-degenerate, see :mod:`~nvalchemi_ase.neighbors.geometry`), ``pbc`` and atom ``counts``."""
    rows = cell.detach().cpu().numpy().astype(np.float64)
    normals = _normals(rows)
    periodic = pbc.cpu().numpy().astype(bool)
    reach = _reach(normals, periodic, radius)
    direct = counts * np.prod(2.0 * reach + 1.0, axis=1) <= MAX_CANDIDATES  # in floats: no overflow
    return SearchCells(
        direct,
        torch.from_numpy(rows),
        *normals,
        periodic,
        torch.from_numpy(reach),
        torch.from_numpy(_spacings(normals)),
    )


def _normals(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``([B, 3, 3] a_{k+1} x a_{k+2}, [B] a_0 . (a_1 x a_2))``: the reciprocal rows times the volume."""
    with np.errstate(all="ignore"):  # a non-finite cell: no images (the models poison its system)
        normals = np.stack([np.cross(rows[:, (k + 1) % 3], rows[:, (k + 2) % 3]) for k in range(3)], axis=1)
        return normals, np.einsum("bd,bd->b", rows[:, 0], normals[:, 0])


def _spacings(normals: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """``[B, 3]`` Å between the lattice planes of each axis: ``h = V / |a_{k+1} x a_{k+2}|``."""
    crossed, volume = normals
    with np.errstate(all="ignore"):
        return np.abs(volume)[:, None] / np.linalg.norm(crossed, axis=2)


def _reach(normals: tuple[np.ndarray, np.ndarray], pbc: np.ndarray, radius: float) -> np.ndarray:
    """``[B, 3]`` int: images to search on each side along each axis (0 along open axes).

    A pair within ``radius`` between atoms inside the cell spans at most
    ``radius / h`` cells along an axis whose lattice planes are ``h`` apart
    (:func:`_spacings`).
    """
    with np.errstate(all="ignore"):
        reach = np.ceil(radius / _spacings(normals) * (1.0 + 1e-12))
    reach = np.where(pbc & np.isfinite(reach), reach, 0.0)
    return np.minimum(reach, 1 << 20).astype(np.int32)


def build_direct(
    systems: np.ndarray,
    positions: torch.Tensor,
    cells: SearchCells,
    ptr32: torch.Tensor,
    batch_idx32: torch.Tensor,
    radius: float,
    matrix: torch.Tensor,
    shifts: torch.Tensor,
    counts: torch.Tensor,
) -> None:
    """Write the rows of ``systems`` (host ``[B]`` bool) into ``matrix``, ``shifts``, ``counts`` (CPU).

    ``positions`` are the search geometry's, ``cells`` its cells' numbers
    (:func:`search_cells`), ``ptr32`` and ``batch_idx32`` the batch's int32
    layout. The atoms are prepared with numpy: a torch operation here would
    wake torch's thread pool, whose spinning threads then compete with the
    kernel's second thread.
    """
    chosen = np.flatnonzero(systems)
    if chosen.size == 0:
        return
    ptr = ptr32.numpy()
    first, end = ptr[chosen].astype(np.int64), ptr[chosen + 1].astype(np.int64)
    rows = row_ranges(first, end)
    lengths = end - first
    # only the chosen systems' atoms are prepared (a rebuild is often a few systems of many); the
    # kernel reads the others' entries of these scratch arrays never
    n = positions.shape[0]
    wrapped = _SCRATCH.take((n, 3), torch.float64, torch.device("cpu"))
    wraps = _SCRATCH.take((n, 3), torch.int32, torch.device("cpu"))
    fractions = _SCRATCH.take((n, 3), torch.float64, torch.device("cpu"))
    local = np.repeat(chosen, lengths)  # each row's system
    cell_rows = cells.rows.numpy()[local]
    here = positions.detach().cpu().numpy()[rows].astype(np.float64)
    # each atom wrapped into its cell along the periodic axes (whole cells W): the images reach every
    # partner. A non-finite position or cell stays unwrapped: it finds no partner, and the models
    # poison its system.
    with np.errstate(all="ignore"):
        fractional = np.einsum("nd,nkd->nk", here, cells.crossed[local]) / cells.volume[local, None]
        moves = np.where(cells.periodic[local] & np.isfinite(fractional), np.floor(fractional), 0.0)
        moves = np.clip(moves, -(1 << 30), 1 << 30)  # int32 shifts (a position 1e10 cells away: no partner)
        wrapped.numpy()[rows] = here - np.einsum("nk,nkd->nd", moves, cell_rows)
        fractions.numpy()[rows] = fractional - moves  # in [0, 1) along the periodic axes
    wraps.numpy()[rows] = moves.astype(np.int32)
    arrays = [index_list(rows, n), wrapped, wraps, fractions, cells.rows, cells.reach, cells.spacings]
    views = [wp.int32, wp.vec3d, wp.vec3i, wp.vec3d, wp.vec3d, wp.vec3i, wp.vec3d]
    inputs = [descriptor(array, view) for array, view in zip(arrays, views, strict=True)]
    inputs += [
        descriptor(ptr32),
        descriptor(batch_idx32),
        float64_scalar(radius),
        float64_scalar(radius * radius),
        descriptor(matrix),
        descriptor(shifts, wp.vec3i),
        descriptor(counts),
    ]
    launch(_kernel(), int(rows.size), inputs, positions.device, rows_per_thread=64)


_SCRATCH = Buffers(count=2)
"""The search's inputs, the same few tensors call after call (their warp views and launches found again)."""
