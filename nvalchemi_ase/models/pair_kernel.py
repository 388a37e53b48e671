"""One fused kernel per pair potential: energies, forces and virials over the neighbour matrix.

The torch path of :class:`~nvalchemi_ase.models.pair.PairPotential` makes a
dozen ``[N, K]`` temporaries per call; on a CPU their memory traffic dominates,
on a GPU their launches do. This kernel (NVIDIA warp, compiled once and cached
on disk, run on the batch's device) walks each atom's neighbours once and
writes the atom's energy, force and virial directly, with no atomics (the list
holds both directions of every pair). Arithmetic is in float64 whatever the
batch's dtype, in the same order as ASE's calculators. Virials are summed only
when stress is asked for. Warp runs a CPU kernel on one thread; on a CPU the
atoms are split over torch's threads (``torch.get_num_threads()``).

A potential provides its pair terms as a ``wp.func`` ``(r2, params) -> vec2d(u, du)``
with ``du = (du/dr)/r``, and its parameters as a float64 vector.
"""

from __future__ import annotations

import functools
import itertools
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp

wp = initialised_warp()


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
    s = shifts[i, k]
    image = wp.float64(s[0]) * a1 + wp.float64(s[1]) * a2 + wp.float64(s[2]) * a3
    return positions[matrix[i, k]] - here + image


@wp.func
def lennard_jones_terms(r2: wp.float64, p: wp.array(dtype=wp.float64)) -> wp.vec2d:
    """p = [sigma, epsilon, rc², ro², smooth (0/1), shift u(rc)] (ASE's ``LennardJones``)."""
    s2 = p[0] * p[0] / r2
    c6 = s2 * s2 * s2
    c12 = c6 * c6
    u = wp.float64(4.0) * p[1] * (c12 - c6)
    du = wp.float64(-24.0) * p[1] * (wp.float64(2.0) * c12 - c6) / r2
    if p[4] == wp.float64(0.0):
        return wp.vec2d(u - p[5], du)
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
def morse_terms(r2: wp.float64, p: wp.array(dtype=wp.float64)) -> wp.vec2d:
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
def _kernel(terms: Any, with_virials: bool) -> Any:
    @wp.kernel(enable_backward=False)
    def pair_sums(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        shifts: wp.array2d(dtype=wp.vec3i),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        params: wp.array(dtype=wp.float64),
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
        for k in range(wp.min(counts[i], matrix.shape[1])):
            d = _pair_vector(i, k, here, positions, matrix, shifts, a1, a2, a3)
            r2 = wp.dot(d, d)
            if r2 <= cutoff2:
                t = terms(r2, params)
                energy += wp.float64(0.5) * t[0]
                force += t[1] * d
                if wp.static(with_virials):
                    virial += wp.float64(0.5) * t[1] * wp.outer(d, d)
        energies[i] = energy
        forces[i] = force
        if wp.static(with_virials):
            virials[i] = virial

    return pair_sums


_ROWS_PER_THREAD = 256
"""On a CPU, atoms per launch below which one thread does all the rows (threads cost ~50 µs).

Measured on 2 cores, LJ argon 8 x 108 atoms: 256 gave 1.29x the steps per second of 1024."""


@functools.cache
def _cpu_threads(count: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(count, thread_name_prefix="nvalchemi_ase-pairs")


def _launch(
    kernel: Any, rows: int, inputs: list[Any], device: torch.device, rows_per_thread: int | None = None
) -> None:
    """Run ``kernel`` over ``rows`` atoms: one launch on a GPU, split over torch's threads on a CPU.

    ``rows_per_thread`` (default ``_ROWS_PER_THREAD``) is the fewest rows worth a
    thread of their own. Warp runs a CPU launch on the calling thread and releases the GIL while
    it runs, so launches over disjoint row ranges from a pool of threads run in
    parallel. Each row is written by exactly one launch: the sums do not
    depend on the number of threads.
    """
    per_thread = _ROWS_PER_THREAD if rows_per_thread is None else rows_per_thread
    threads = min(torch.get_num_threads(), rows // per_thread)
    if device.type != "cpu" or threads < 2:
        _recorded(kernel, 0, rows, device, inputs).launch()
        return
    _load_on_cpu(kernel)  # compiling or loading must not race between the threads
    bounds = [rows * k // threads for k in range(threads + 1)]
    pool = _cpu_threads(threads)
    launches = [
        pool.submit(_recorded(kernel, start, end - start, device, inputs).launch)
        for start, end in itertools.pairwise(bounds)
    ]
    for launch in launches:
        launch.result()


_DESCRIPTORS: dict[tuple, Any] = {}
_LAUNCHES: dict[tuple, tuple[Any, list[Any]]] = {}
_CACHE_SIZE = 1024


def _descriptor(tensor: torch.Tensor, dtype: Any = None) -> Any:
    """Warp's view of ``tensor`` (no copy, no reference to the tensor), cached by address and layout.

    ``wp.from_torch`` costs about 15 µs per argument, and a launch has ten: on a
    small system that was most of a step. A view depends only on the address,
    shape, strides, dtype and device, so a cached one is exactly right for any
    later tensor with the same memory and layout (tensors freed and allocated
    again at the same address included). The caller keeps the tensor alive
    while the kernel runs.
    """
    key = (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device, dtype)
    found = _DESCRIPTORS.get(key)
    if found is None:
        if len(_DESCRIPTORS) >= _CACHE_SIZE:
            _DESCRIPTORS.clear()
        found = _DESCRIPTORS[key] = wp.from_torch(tensor, dtype=dtype, return_ctype=True)
    return found


def _recorded(kernel: Any, first: int, rows: int, device: torch.device, inputs: list[Any]) -> Any:
    """A recorded warp launch of ``kernel`` over rows ``first .. first + rows`` with ``inputs`` set.

    Packing every argument again costs more than the kernel on small systems;
    a recorded launch re-packs only the arguments whose view changed since its
    last use (positions and outputs, typically).
    """
    key = (kernel, first, rows, device)
    found = _LAUNCHES.get(key)
    if found is None:
        if len(_LAUNCHES) >= _CACHE_SIZE:
            _LAUNCHES.clear()
        stream = wp.stream_from_torch(device) if device.type == "cuda" else None
        command = wp.launch(
            kernel,
            dim=rows,
            inputs=[first, *inputs],
            device=wp.device_from_torch(device),
            stream=stream,
            record_cmd=True,
        )
        _LAUNCHES[key] = (command, list(inputs))
        return command
    command, current = found
    for index, value in enumerate(inputs):
        if value is not current[index]:
            command.set_param_at_index(index + 1, value)
            current[index] = value
    return command


@functools.cache
def _load_on_cpu(kernel: Any) -> None:
    wp.load_module(kernel.module, device="cpu")


def _float64_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a contiguous float64 tensor without autograd history (itself when it already is)."""
    if tensor.dtype == torch.float64 and not tensor.requires_grad and tensor.is_contiguous():
        return tensor  # attribute checks cost less than three no-op dispatches
    return tensor.detach().to(torch.float64).contiguous()


@functools.lru_cache(maxsize=64)
def _float64(value: float) -> Any:
    """One warp scalar per value, so a recorded launch sees the same object while it is unchanged."""
    return wp.float64(value)


def pair_sums(
    terms: Any,
    params: torch.Tensor,
    positions: torch.Tensor,
    neighbors: Any,
    cutoff: float,
    with_virials: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-atom energies ``[N]``, forces ``[N, 3]`` and virials ``[N, 3, 3]`` (float64) of one potential.

    ``neighbors`` is a :class:`~nvalchemi_ase.neighbors.Neighbors`; its raw int32
    buffers are read directly and the image vectors made from the cell inside
    the kernel. Pairs farther than ``cutoff`` are skipped. Without
    ``with_virials`` the kernel skips the virial sums (a fifth of its work) and
    the third result is None.
    """
    device = positions.device
    f64 = torch.float64
    params, positions = _float64_tensor(params), _float64_tensor(positions)
    cell = _float64_tensor(neighbors.cell)
    n = positions.shape[0]
    energies = torch.empty(n, dtype=f64, device=device)
    forces = torch.empty(n, 3, dtype=f64, device=device)
    virials = torch.empty(n if with_virials else 0, 3, 3, dtype=f64, device=device)
    inputs = [
        _descriptor(positions, wp.vec3d),
        _descriptor(neighbors.raw_matrix),
        _descriptor(neighbors.raw_counts),
        _descriptor(neighbors.raw_shifts, wp.vec3i),
        _descriptor(cell, wp.vec3d),
        _descriptor(neighbors.batch_idx),
        _descriptor(params),
        _float64(cutoff * cutoff),
        _descriptor(energies),
        _descriptor(forces, wp.vec3d),
        _descriptor(virials, wp.mat33d),
    ]
    _launch(_kernel(terms, with_virials), n, inputs, device)
    return energies, forces, virials if with_virials else None
