"""One fused kernel per pair potential: energies, forces and virials over the neighbour matrix.

The torch path of :class:`~nvalchemi_ase.models.pair.PairPotential` makes a
dozen ``[N, K]`` temporaries per call; on a CPU their memory traffic dominates,
on a GPU their launches do. This kernel (NVIDIA warp, compiled once and cached
on disk, run on the batch's device) walks each atom's neighbours once and
writes the atom's energy, force and virial directly, with no atomics (the list
holds both directions of every pair). Arithmetic is in float64 whatever the
batch's dtype, in the same order as ASE's calculators. Virials are summed only
when stress is asked for. On a CPU the atoms are split over torch's threads
(see :func:`~nvalchemi_ase.ops.warp_launch.launch`).

A visit of a listed pair is kept to what the physics needs: the pair's image
vector is read, made once per list (:mod:`nvalchemi_ase.neighbors.images`),
where a list serves many steps; the potential's parameters sit in registers;
the loop has no branch. About 44 instructions a visit for shifted LJ, against
about 99 before (the x86 code warp compiles for this machine).

On a CPU, a list that serves many steps is summed over its half instead
(:mod:`~nvalchemi_ase.models.pair_half_kernel`): each pair visited once, the
partner's share written by Newton's third law, deterministic over any number of
threads (a system's rows in one launch, or a large system in a fixed number of
chunks with their own buffers). The same numbers to round-off, fewer visits:
the kernel 1.2-1.4x faster at bench_lammps's workloads, whole steps 1.2-1.4x
(see the benchmarks page). CUDA, lists made afresh each step and the torch path keep the full list.

A potential provides its pair terms as a ``wp.func`` ``(r2, p) -> vec2d(u, du)``
with ``du = (du/dr)/r`` and ``p`` a :data:`Parameters` vector (its float64
parameters, padded with zeros to :data:`PARAMETERS`). The kernel reads the
vector once per atom, so the pair loop keeps it in registers.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.neighbors.images import image_vector
from nvalchemi_ase.ops import segment_sum
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.verlet_kernel import SecondKick
from nvalchemi_ase.ops.warp_launch import descriptor, float64_scalar, float64_tensor, launch

wp = initialised_warp()

PARAMETERS = 8
"""Length of a potential's parameter vector in the kernel (shorter ones are padded with zeros)."""

Parameters = wp.types.vector(length=PARAMETERS, dtype=wp.float64)

HALF_LIST_ON_CPU = True
"""Whether :func:`pair_sums` takes the half-list kernel where it applies (a benchmark switches it)."""

IMAGES_BYTES = 1 << 28
"""The largest list (``N·K·24`` bytes of image vectors) for which they are made once, not per visit."""


@wp.func
def _pair_vector(
    i: wp.int32,
    k: wp.int32,
    here: wp.vec3d,
    positions: wp.array(dtype=wp.vec3d),
    matrix: wp.array2d(dtype=wp.int32),
    shifts: wp.array2d(dtype=wp.vec3i),
    a1: wp.vec3d,
    a2: wp.vec3d,
    a3: wp.vec3d,
) -> wp.vec3d:
    """The vector from atom ``i`` to its ``k``-th neighbour's image (cell rows ``a1``, ``a2``, ``a3``)."""
    return positions[matrix[i, k]] - here + image_vector(shifts[i, k], a1, a2, a3)


@wp.func
def _lennard_jones(r2: wp.float64, p: Parameters) -> wp.vec2d:
    """p = [sigma, epsilon, rc², ro², smooth (0/1), shift u(rc)] (ASE's ``LennardJones``): bare u, du."""
    s2 = p[0] * p[0] / r2
    c6 = s2 * s2 * s2
    c12 = c6 * c6
    u = wp.float64(4.0) * p[1] * (c12 - c6)
    du = wp.float64(-24.0) * p[1] * (wp.float64(2.0) * c12 - c6) / r2
    return wp.vec2d(u, du)


@wp.func
def lennard_jones_terms(r2: wp.float64, p: Parameters) -> wp.vec2d:
    """ASE's ``LennardJones``, energy shifted to zero at rc (``smooth=False``)."""
    t = _lennard_jones(r2, p)
    return wp.vec2d(t[0] - p[5], t[1])


@wp.func
def lennard_jones_smooth_terms(r2: wp.float64, p: Parameters) -> wp.vec2d:
    """ASE's ``LennardJones`` with ``smooth=True``: switched to zero between ro and rc."""
    t = _lennard_jones(r2, p)
    u = t[0]
    du = t[1]
    b = p[2]
    a = p[3]
    switch = wp.float64(1.0)
    slope = wp.float64(0.0)
    if r2 >= a:
        span = (b - a) * (b - a) * (b - a)
        switch = (b - r2) * (b - r2) * (b + wp.float64(2.0) * r2 - wp.float64(3.0) * a) / span
        slope = wp.float64(6.0) * (b - r2) * (a - r2) / span
    return wp.vec2d(u * switch, switch * du + wp.float64(2.0) * slope * u)


@wp.func
def morse_terms(r2: wp.float64, p: Parameters) -> wp.vec2d:
    """p = [epsilon, rho0, r0, inner cutoff, outer cutoff] (ASE's ``MorsePotential``)."""
    r = wp.sqrt(r2)
    expf = wp.exp(p[1] * (wp.float64(1.0) - r / p[2]))
    energy = p[0] * expf * (expf - wp.float64(2.0))
    d_energy = (wp.float64(-2.0) * p[0] * p[1] / p[2]) * expf * (expf - wp.float64(1.0))
    s = wp.float64(1.0) - (r - p[3]) / (p[4] - p[3])
    cut = wp.float64(0.0)
    d_cut = wp.float64(0.0)
    if s >= wp.float64(1.0):
        cut = wp.float64(1.0)
    elif s > wp.float64(0.0):
        s3 = s * s * s
        cut = s3 * (wp.float64(6.0) * s * s - wp.float64(15.0) * s + wp.float64(10.0))
        d_cut = -(wp.float64(30.0) * s * s * s * s - wp.float64(60.0) * s3 + wp.float64(30.0) * s * s) / (
            p[4] - p[3]
        )
    return wp.vec2d(energy * cut, (d_energy * cut + energy * d_cut) / r)


@functools.cache
def _kernel(terms: Any, with_virials: bool, with_images: bool = False) -> Any:
    @wp.kernel(enable_backward=False)
    def pair_sums(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        images: wp.array2d(dtype=wp.vec3d),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        params: wp.array(dtype=Parameters),
        cutoff2: wp.float64,
        energies: wp.array(dtype=wp.float64),
        forces: wp.array(dtype=wp.vec3d),
        virials: wp.array(dtype=wp.mat33d),
    ):
        i = first + wp.tid()
        here = positions[i]
        b = batch_idx[i]
        a1 = cell_rows[b, 0]
        a2 = cell_rows[b, 1]
        a3 = cell_rows[b, 2]
        # 0, or NaN when this atom's position or its system's cell is not finite: results never
        # ignore a bad atom (its energy, force and virial are NaN, so its system's are too)
        rows = a1 + a2 + a3
        nan = wp.float64(0.0) * (wp.dot(here, here) + wp.dot(rows, rows))
        energy = nan
        force = wp.vec3d(nan, nan, nan)
        virial = wp.mat33d(nan, nan, nan, nan, nan, nan, nan, nan, nan)
        p = params[0]
        # a while loop: warp's range() steps by a run-time sign, which costs the loop a dozen
        # instructions a visit, and a counter from 0 lets the compiler drop the negative-index wrap
        count = wp.min(counts[i], matrix.shape[1])
        k = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        while k < count:
            if wp.static(with_images):  # made once per list: three loads instead of the arithmetic
                d = positions[matrix[i, k]] - here + images[i, k]
            else:
                d = _pair_vector(i, k, here, positions, matrix, shifts, a1, a2, a3)
            r2 = wp.dot(d, d)
            # branch-free: a listed pair beyond the cutoff (a quarter of them, in no predictable
            # order) adds exact zeros instead of a mispredicted jump, so the sums keep their bits
            inside = wp.where(r2 <= cutoff2, wp.float64(1.0), wp.float64(0.0))
            t = terms(r2, p)
            u = t[0] * inside
            du = t[1] * inside
            # each pair's energy and virial are halved (both directions are listed): halving the
            # sums once is exact, so the bits are those of halving every term
            energy += u
            force += du * d
            if wp.static(with_virials):
                virial += du * wp.outer(d, d)
            k += 1
        energies[i] = wp.float64(0.5) * energy
        forces[i] = force
        if wp.static(with_virials):
            virials[i] = wp.float64(0.5) * virial

    return pair_sums


def pair_sums(
    terms: Any,
    params: torch.Tensor,
    positions: torch.Tensor,
    neighbors: Any,
    cutoff: float,
    with_virials: bool = True,
    half: bool | None = None,
    atom_energies: bool = True,
    system_energies: torch.Tensor | None = None,
    second_kick: SecondKick | None = None,
    forces_bound: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-atom energies ``[N]``, forces ``[N, 3]`` and virials ``[N, 3, 3]`` (float64) of one potential.

    ``neighbors`` is a :class:`~nvalchemi_ase.neighbors.Neighbors`; its raw int32
    buffers are read directly. A list that serves many steps (``reused``) gives
    its pairs' image vectors, made once (:attr:`~nvalchemi_ase.neighbors.Neighbors.image_vectors`);
    otherwise the kernel makes them from the integer shifts and the cell, with the
    same arithmetic and the same bits. Pairs farther than ``cutoff`` are skipped. Without
    ``with_virials`` the kernel skips the virial sums (a fifth of its work) and
    the third result is None.

    ``half`` picks the half-list kernel (:mod:`~nvalchemi_ase.models.pair_half_kernel`:
    each pair visited once); None (the default) takes it wherever it applies, a
    CPU list that serves many steps (:func:`uses_half_list`). True where it does
    not apply is refused. ``atom_energies`` False lets the half-list kernel skip the
    partners' energy shares: the first result then only sums to the systems' energies
    (see :func:`~nvalchemi_ase.models.pair_half_kernel.half_pair_sums`). ``system_energies``,
    a float64 ``[B]`` tensor, is filled with those sums (the bits of
    :func:`~nvalchemi_ase.ops.segment_sum` over ``neighbors.batch_idx``). ``second_kick``, a
    :class:`~nvalchemi_ase.ops.verlet_kernel.SecondKick`, is done with the forces where the
    half-list kernel can (``second_kick.taken`` says whether it was). ``forces_bound``, a
    float64 ``[B]`` tensor given with ``system_energies``, is filled with the systems'
    :data:`~nvalchemi_ase.data.fields.FORCES_BOUND` by the half-list kernel (refused
    elsewhere: see :func:`fills_forces_bound`).
    """
    device = positions.device
    params, positions = float64_tensor(params), float64_tensor(positions)
    if params.shape != (PARAMETERS,):
        params = torch.nn.functional.pad(params.reshape(-1), (0, PARAMETERS - params.numel()))
    if half or (half is None and HALF_LIST_ON_CPU):
        if uses_half_list(neighbors):
            return _half_kernel().half_pair_sums(
                terms,
                params,
                positions,
                neighbors,
                cutoff,
                with_virials,
                atom_energies,
                system_energies,
                second_kick,
                forces_bound,
            )
        if half:
            raise ValueError(
                "the half-list kernel needs a CPU list that serves many steps (Neighbors.reused)"
            )
    if forces_bound is not None:
        raise ValueError("forces_bound is filled by the half-list kernel only (see fills_forces_bound)")
    cell = float64_tensor(neighbors.cell)
    n = positions.shape[0]
    # outputs no one else holds, a few reused in turn (see nvalchemi_ase.ops.buffers)
    energies = _ENERGIES.take((n,), torch.float64, device)
    forces = _FORCES.take((n, 3), torch.float64, device)
    virials = _VIRIALS.take((n, 3, 3), torch.float64, device) if with_virials else _no_virials(device)
    with_images = uses_image_vectors(neighbors)
    images = neighbors.image_vectors if with_images else no_images(device)
    inputs = [
        view(positions, wp.vec3d),
        view(neighbors.raw_matrix),
        view(neighbors.raw_counts),
        view(neighbors.raw_shifts, wp.vec3i),
        view(images, wp.vec3d),
        view(cell, wp.vec3d),
        view(neighbors.batch_idx),
        descriptor(params.view(1, PARAMETERS), Parameters),  # a new view object each call: by address
        float64_scalar(cutoff * cutoff),
        view(energies),
        view(forces, wp.vec3d),
        view(virials, wp.mat33d),
    ]
    launch(_kernel(terms, with_virials, with_images), n, inputs, device)
    if system_energies is not None:
        segment_sum(energies, neighbors.batch_idx, system_energies.shape[0], out=system_energies)
    return energies, forces, virials if with_virials else None


def fills_forces_bound(neighbors: Any) -> bool:
    """Whether :func:`pair_sums` (``half`` None) takes the half-list kernel, which fills ``forces_bound``."""
    return HALF_LIST_ON_CPU and uses_half_list(neighbors)


def uses_half_list(neighbors: Any) -> bool:
    """Whether the half-list kernel applies: a CPU list that serves many steps, its half not too large."""
    return neighbors.raw_matrix.device.type == "cpu" and uses_image_vectors(neighbors)


@functools.cache
def _half_kernel() -> Any:
    """:mod:`~nvalchemi_ase.models.pair_half_kernel`, looked up once (it imports this module)."""
    from nvalchemi_ase.models import pair_half_kernel

    return pair_half_kernel


def uses_image_vectors(neighbors: Any) -> bool:
    """Whether a kernel reads the list's image vectors, made once (a list that serves many steps)."""
    return neighbors.reused and neighbors.raw_shifts.numel() * 8 <= IMAGES_BYTES


@functools.cache
def no_images(device: torch.device) -> torch.Tensor:
    """The empty ``images`` argument of a kernel that makes the image vectors itself."""
    return torch.empty(0, 0, 3, dtype=torch.float64, device=device)


_ENERGIES, _FORCES, _VIRIALS = Buffers(), Buffers(), Buffers()
SYSTEM_ENERGIES = Buffers()
"""The systems' energies a caller has :func:`pair_sums` fill (``system_energies``), step after step."""
FORCES_BOUNDS = Buffers()
"""The systems' bounds a caller has :func:`pair_sums` fill (``forces_bound``), step after step."""


@functools.cache
def _no_virials(device: torch.device) -> torch.Tensor:
    """What the kernel gets for virials it does not write (never read: no data)."""
    return torch.empty(0, 3, 3, dtype=torch.float64, device=device)
