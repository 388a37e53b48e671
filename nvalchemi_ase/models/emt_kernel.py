"""EMT's pair sums in two fused kernels: the density σ₁, then energies, forces and virials.

The tensor path of :class:`~nvalchemi_ase.models.emt.EMT` makes some twenty
``[N, K]`` temporaries per call (K ≈ 80 neighbours in a metal), and on a CPU
their memory traffic is most of a step. These NVIDIA warp kernels (compiled
once, cached on disk, run on the batch's device) walk each atom's neighbours
and keep the pair terms in registers:

1. ``sigma1[a] = Σ_b χ_ab·w·exp(−η₂_b (r − β s0_b))``; the cohesive energy and
   ``dE_c/dσ₁`` of each atom then follow in a few ``[N]`` tensor operations;
2. per atom, the atomic-sphere sum ``Σ_b (e_ab + e_ba)``, the force
   ``Σ_b (dE/dr / r)·d_ab`` and (when asked) the virial ``½ Σ_b (dE/dr / r) d⊗d``.

The neighbour matrix holds both directions of every pair, so every sum is the
centre atom's own: no atomics, the same numbers for any number of threads. The
arithmetic is in float64, term for term that of the tensor path.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.models.pair_kernel import _pair_vector, no_images, uses_image_vectors
from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.warp_launch import descriptor, float64_tensor, launch

wp = initialised_warp()

ROWS_PER_THREAD = 64
"""On a CPU, atoms per thread below which one thread does all the rows (an EMT row is ~80 pairs)."""

# columns of the per-atom table handed to the kernels
BETA_S0, ETA2, KAPPA_BETA, N0, INV_N0, SPHERE, RC, SLOPE, RC_LIST, DE_DSIGMA = range(10)
COLUMNS = 10


@functools.cache
def _sigma1_kernel(with_images: bool) -> Any:
    @wp.kernel(enable_backward=False)
    def sigma1_sums(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        images: wp.array2d(dtype=wp.vec3d),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        table: wp.array2d(dtype=wp.float64),
        sigma1: wp.array(dtype=wp.float64),
    ):
        i = first + wp.tid()
        here = positions[i]
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        rc_list = table[i, 8]
        total = wp.float64(0.0)
        for k in range(wp.min(counts[i], matrix.shape[1])):
            if wp.static(with_images):  # made once per list (see pair_kernel)
                d = positions[matrix[i, k]] - here + images[i, k]
            else:
                d = _pair_vector(i, k, here, positions, matrix, shifts, a1, a2, a3)
            r = wp.sqrt(wp.dot(d, d))
            if r < rc_list:
                j = matrix[i, k]
                w = wp.float64(1.0) / (wp.float64(1.0) + wp.exp(table[i, 7] * (r - table[i, 6])))
                w_in = w * table[j, 3] * table[i, 4]
                total += wp.exp(table[j, 1] * (table[j, 0] - r)) * w_in
        sigma1[i] = total

    return sigma1_sums


@functools.cache
def _sums_kernel(with_virials: bool, with_images: bool) -> Any:
    @wp.kernel(enable_backward=False)
    def emt_sums(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        images: wp.array2d(dtype=wp.vec3d),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        table: wp.array2d(dtype=wp.float64),
        spheres: wp.array(dtype=wp.float64),
        forces: wp.array(dtype=wp.vec3d),
        virials: wp.array(dtype=wp.mat33d),
    ):
        i = first + wp.tid()
        here = positions[i]
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        beta_s0_a = table[i, 0]
        eta2_a = table[i, 1]
        kappa_beta_a = table[i, 2]
        n0_a = table[i, 3]
        inv_n0_a = table[i, 4]
        sphere_a = table[i, 5]
        rc = table[i, 6]
        slope = table[i, 7]
        rc_list = table[i, 8]
        de_dsigma_a = table[i, 9]
        sphere_sum = wp.float64(0.0)
        force = wp.vec3d()
        virial = wp.mat33d()
        for k in range(wp.min(counts[i], matrix.shape[1])):
            if wp.static(with_images):
                d = positions[matrix[i, k]] - here + images[i, k]
            else:
                d = _pair_vector(i, k, here, positions, matrix, shifts, a1, a2, a3)
            r = wp.sqrt(wp.dot(d, d))
            if r < rc_list:
                j = matrix[i, k]
                beta_s0_b = table[j, 0]
                eta2_b = table[j, 1]
                kappa_beta_b = table[j, 2]
                w = wp.float64(1.0) / (wp.float64(1.0) + wp.exp(slope * (r - rc)))
                dlogw = slope * (w - wp.float64(1.0))
                w_in = w * table[j, 3] * inv_n0_a
                w_out = w * n0_a * table[j, 4]
                sigma_in = wp.exp(eta2_b * (beta_s0_b - r)) * w_in
                sigma_out = wp.exp(eta2_a * (beta_s0_a - r)) * w_out
                sphere_in = sphere_a * wp.exp(kappa_beta_b * (beta_s0_b - r)) * w_in
                sphere_out = table[j, 5] * wp.exp(kappa_beta_a * (beta_s0_a - r)) * w_out
                sphere_sum += sphere_in + sphere_out
                de_dr = (
                    sphere_in * (dlogw - kappa_beta_b)
                    + sphere_out * (dlogw - kappa_beta_a)
                    + de_dsigma_a * sigma_in * (dlogw - eta2_b)
                    + table[j, 9] * sigma_out * (dlogw - eta2_a)
                )
                scaled = de_dr / r
                force += scaled * d
                if wp.static(with_virials):
                    virial += wp.float64(0.5) * scaled * wp.outer(d, d)
        spheres[i] = sphere_sum
        forces[i] = force
        if wp.static(with_virials):
            virials[i] = virial

    return emt_sums


def _geometry(positions: torch.Tensor, neighbors: Any, cell: torch.Tensor) -> tuple[list[Any], bool]:
    """The kernels' first arguments (warp views of the geometry), and whether they hold image vectors."""
    with_images = uses_image_vectors(neighbors)
    images = neighbors.image_vectors if with_images else no_images(positions.device)
    views = [
        descriptor(positions, wp.vec3d),
        descriptor(neighbors.raw_matrix),
        descriptor(neighbors.raw_counts),
        descriptor(neighbors.raw_shifts, wp.vec3i),
        descriptor(images, wp.vec3d),
        descriptor(cell, wp.vec3d),
        descriptor(neighbors.batch_idx),
    ]
    return views, with_images


def density(positions: torch.Tensor, neighbors: Any, table: torch.Tensor) -> torch.Tensor:
    """``σ₁`` ``[N]`` of every atom; ``table`` is the ``[N, COLUMNS]`` float64 per-atom table."""
    positions, cell = float64_tensor(positions), float64_tensor(neighbors.cell)
    sigma1 = torch.empty(positions.shape[0], dtype=torch.float64, device=positions.device)
    geometry, with_images = _geometry(positions, neighbors, cell)
    inputs = [*geometry, descriptor(table), descriptor(sigma1)]
    launch(_sigma1_kernel(with_images), positions.shape[0], inputs, positions.device, ROWS_PER_THREAD)
    return sigma1


def sums(
    positions: torch.Tensor, neighbors: Any, table: torch.Tensor, with_virials: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Atomic-sphere sums ``[N]``, forces ``[N, 3]`` and virials ``[N, 3, 3]`` (None: ``with_virials`` off).

    ``table`` must hold ``dE_c/dσ₁`` in its last column.
    """
    positions, cell = float64_tensor(positions), float64_tensor(neighbors.cell)
    n, device = positions.shape[0], positions.device
    spheres = torch.empty(n, dtype=torch.float64, device=device)
    forces = torch.empty(n, 3, dtype=torch.float64, device=device)
    virials = torch.empty(n if with_virials else 0, 3, 3, dtype=torch.float64, device=device)
    geometry, with_images = _geometry(positions, neighbors, cell)
    inputs = [
        *geometry,
        descriptor(table),
        descriptor(spheres),
        descriptor(forces, wp.vec3d),
        descriptor(virials, wp.mat33d),
    ]
    launch(_sums_kernel(with_virials, with_images), n, inputs, device, ROWS_PER_THREAD)
    return spheres, forces, virials if with_virials else None
