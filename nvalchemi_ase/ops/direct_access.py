"""Reads and writes of C-contiguous warp arrays at indices known to be in range, for hot loops.

Warp's ``a[i]`` accepts negative indices (it adds the length when ``i < 0``)
and multiplies by the array's strides as run-time values. In the half-list pair
kernel's visit of a pair that is five indices, about twenty of the seventy-five
instructions the compiler made of it on this CPU. These functions read the
element as ``a.data[i]`` (or ``a.data[i * columns + k]``) instead: native
C++ snippets (``wp.func_native``), inlined like any ``wp.func``, giving the same
values and so the same bits. A visit became 1.15x faster (bench_pair_kernel's
workloads, one thread).

They are for arrays laid out C-contiguously (a caller checks with
:func:`contiguous`) and indices from our own data structures, never negative
and within bounds: they check neither, as the point is not to.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp

wp = initialised_warp()


@wp.func_native("return matrix.data[i * matrix.shape[1] + k];")
def entry(matrix: wp.array2d(dtype=wp.int32), i: wp.int32, k: wp.int32) -> wp.int32:
    """``matrix[i, k]`` of a C-contiguous int32 matrix."""
    ...


@wp.func_native("return rows.data[j];")
def padded_at(rows: wp.array(dtype=wp.vec4d), j: wp.int32) -> wp.vec4d:
    """``rows[j]`` of a padded array (32-byte rows: an aligned load that never straddles a cache line)."""
    ...


@wp.func_native("rows.data[j] = rows.data[j] - value;")
def subtract_padded(rows: wp.array(dtype=wp.vec4d), j: wp.int32, value: wp.vec4d):
    """``rows[j] = rows[j] - value`` of a padded array (not atomic: one writer at a time)."""
    ...


@wp.func_native("rows.data[j] = rows.data[j] + value;")
def add_scalar(rows: wp.array(dtype=wp.float64), j: wp.int32, value: wp.float64):
    """``rows[j] = rows[j] + value`` (not atomic: one writer at a time)."""
    ...


@wp.func_native("rows.data[j] = rows.data[j] + value;")
def add_matrix(rows: wp.array(dtype=wp.mat33d), j: wp.int32, value: wp.mat33d):
    """``rows[j] = rows[j] + value`` (not atomic: one writer at a time)."""
    ...


def contiguous(*tensors: torch.Tensor) -> bool:
    """Whether every tensor is laid out as these functions read it (C-contiguous)."""
    return all(tensor.is_contiguous() for tensor in tensors)
