"""Each listed pair's image vector ``shifts @ cell`` in Å, made once per list for the pair kernels.

A fused pair kernel that reads a pair's integer shift makes the Cartesian image
inside its loop: three loads, three int-to-float conversions and nine
multiply-adds a visit, for a value that does not change while the list and the
cell hold. Made here once per list (one warp kernel over the listed slots,
rows split over torch's threads on a CPU), a visit loads three floats instead.
The arithmetic is the kernel's own, ``(s₀·a₁ + s₁·a₂) + s₂·a₃`` in float64, so
pair vectors keep their bits either way.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.warp_launch import descriptor, float64_tensor, int32_scalar, launch

wp = initialised_warp()


@wp.func
def image_vector(s: wp.vec3i, a1: wp.vec3d, a2: wp.vec3d, a3: wp.vec3d) -> wp.vec3d:
    """The Cartesian image of integer shift ``s`` in the cell with rows ``a1``, ``a2``, ``a3``."""
    return wp.float64(s[0]) * a1 + wp.float64(s[1]) * a2 + wp.float64(s[2]) * a3


@functools.cache
def _kernel() -> Any:
    @wp.kernel(enable_backward=False)
    def image_vectors(
        first: wp.int32,
        matrix_width: wp.int32,
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        images: wp.array2d(dtype=wp.vec3d),
    ):
        i = first + wp.tid()
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        for k in range(wp.min(counts[i], matrix_width)):
            images[i, k] = image_vector(shifts[i, k], a1, a2, a3)

    return image_vectors


def image_vectors(
    shifts: torch.Tensor, counts: torch.Tensor, cell: torch.Tensor, batch_idx: torch.Tensor
) -> torch.Tensor:
    """``[N, K, 3]`` float64 image vectors of the listed slots (slots past ``counts`` are left unset).

    ``shifts`` ``[N, K, 3]`` and ``counts`` ``[N]`` are a list's int32 buffers,
    ``cell`` ``[B, 3, 3]``, ``batch_idx`` ``[N]``.
    """
    n, width = shifts.shape[0], shifts.shape[1]
    images = torch.empty(n, width, 3, dtype=torch.float64, device=shifts.device)
    cell = float64_tensor(cell)
    inputs = [
        int32_scalar(width),
        descriptor(counts),
        descriptor(shifts, wp.vec3i),
        descriptor(cell, wp.vec3d),
        descriptor(batch_idx),
        descriptor(images, wp.vec3d),
    ]
    launch(_kernel(), n, inputs, shifts.device)
    return images
