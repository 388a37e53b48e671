"""FIRE's step (:func:`nvalchemi_ase.ops.fire.fire_step`) as one warp kernel, one thread per system.

On a CPU the torch step is about thirty operations over the batch (three
reductions per system, the mixing, the new ``dt``, ``a`` and ``n``, the step
and its cap): on 64 systems of 32 atoms that is ~0.3 ms, where the arithmetic
takes a few microseconds. Here each system's thread makes three passes over its
atoms (the sums, then the new velocities and the step's length, then the
move), with the torch step's arithmetic in its order: each sum runs over the
atoms in order from zero, as ``index_add_`` does on a CPU, each row's terms as
``(x + y) + z``, and ``maxstep / |dr|`` is a product with the reciprocal, as
torch computes a number over a tensor. The square roots are the CPU's own,
correctly rounded as numpy's (and so ASE's) are; torch's vectorised CPU
``sqrt`` is at times one unit in the last place off, so the two steps agree to
that (``tests/dynamics/test_fire_kernel.py``).

``members`` (``[B]`` bool) names the systems that step; the others' rows and
state are copied unchanged, so a fused stage's masked update needs no held
copy and no blend afterwards.

CPU only: a GPU thread looping over a large system's atoms would be slower
than torch's reductions, which stay the GPU's path. Float64 only, like the
Verlet kernels.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.fire import FireParameters, FireState
from nvalchemi_ase.ops.warp_launch import float64_scalar, launch

wp = initialised_warp()

ATOMS_PER_THREAD = 32768
"""Atoms below which one thread steps every system (a hand-off costs more than a small batch's step)."""


@wp.kernel(enable_backward=False)
def _fire_step(
    first: wp.int32,
    ptr: wp.array(dtype=wp.int64),
    members: wp.array(dtype=wp.bool),
    positions: wp.array(dtype=wp.vec3d),
    forces: wp.array(dtype=wp.vec3d),
    velocities: wp.array(dtype=wp.vec3d),
    dt: wp.array(dtype=wp.float64),
    a: wp.array(dtype=wp.float64),
    n: wp.array(dtype=wp.int64),
    maxstep: wp.float64,
    dtmax: wp.float64,
    nmin: wp.float64,
    finc: wp.float64,
    fdec: wp.float64,
    astart: wp.float64,
    fa: wp.float64,
    new_positions: wp.array(dtype=wp.vec3d),
    new_velocities: wp.array(dtype=wp.vec3d),
    new_dt: wp.array(dtype=wp.float64),
    new_a: wp.array(dtype=wp.float64),
    new_n: wp.array(dtype=wp.int64),
):
    b = first + wp.tid()
    start = wp.int32(ptr[b])
    end = wp.int32(ptr[b + 1])
    zero = wp.float64(0.0)
    one = wp.float64(1.0)
    if not members[b]:
        for i in range(start, end):
            new_positions[i] = positions[i]
            new_velocities[i] = velocities[i]
        new_dt[b] = dt[b]
        new_a[b] = a[b]
        new_n[b] = n[b]
        return

    power = zero
    f_square = zero
    v_square = zero
    for i in range(start, end):
        f = forces[i]
        v = velocities[i]
        power += (f[0] * v[0] + f[1] * v[1]) + f[2] * v[2]
        f_square += (f[0] * f[0] + f[1] * f[1]) + f[2] * f[2]
        v_square += (v[0] * v[0] + v[1] * v[1]) + v[2] * v[2]
    f_norm = wp.sqrt(f_square)
    v_norm = wp.sqrt(v_square)

    started = n[b] >= wp.int64(0)
    downhill = started and power > zero
    uphill = started and not downhill
    mixing = zero
    scale = zero
    if downhill:
        mixing = a[b]
        divisor = one
        if f_norm > zero:
            divisor = f_norm
        scale = a[b] * v_norm / divisor
    keep = one - mixing
    if uphill:
        keep = zero

    step_dt = dt[b]
    step_a = a[b]
    if downhill and wp.float64(n[b]) > nmin:
        step_dt = wp.min(dt[b] * finc, dtmax)
        step_a = a[b] * fa
    if uphill:
        step_dt = dt[b] * fdec
        step_a = astart
    step_n = wp.int64(0)
    if downhill:
        step_n = n[b] + wp.int64(1)

    dr_square = zero
    for i in range(start, end):
        f = forces[i]
        v = velocities[i]
        v = wp.vec3d(keep * v[0] + scale * f[0], keep * v[1] + scale * f[1], keep * v[2] + scale * f[2])
        v = wp.vec3d(v[0] + step_dt * f[0], v[1] + step_dt * f[1], v[2] + step_dt * f[2])
        new_velocities[i] = v
        dr = wp.vec3d(step_dt * v[0], step_dt * v[1], step_dt * v[2])
        dr_square += (dr[0] * dr[0] + dr[1] * dr[1]) + dr[2] * dr[2]
    dr_norm = wp.sqrt(dr_square)
    shrink = one
    if dr_norm > maxstep:
        divisor = one
        if dr_norm > zero:
            divisor = dr_norm
        shrink = maxstep * (one / divisor)  # as torch's float / tensor: a product with the reciprocal

    for i in range(start, end):
        v = new_velocities[i]
        r = positions[i]
        dr = wp.vec3d((step_dt * v[0]) * shrink, (step_dt * v[1]) * shrink, (step_dt * v[2]) * shrink)
        new_positions[i] = wp.vec3d(r[0] + dr[0], r[1] + dr[1], r[2] + dr[2])
    new_dt[b] = step_dt
    new_a[b] = step_a
    new_n[b] = step_n


POSITIONS = Buffers()
VELOCITIES = Buffers()
SYSTEM_VALUES = Buffers()


def fits(positions: torch.Tensor, forces: torch.Tensor, state: FireState, params: FireParameters) -> bool:
    """Whether the kernel takes this step: a CPU, float64 contiguous rows, plain-number parameters."""
    rows = (positions, forces, state.velocities, state.dt, state.a)
    return (
        positions.device.type == "cpu"
        and all(t.dtype == torch.float64 and t.is_contiguous() and not t.requires_grad for t in rows)
        and state.n.dtype == torch.int64
        and not any(isinstance(value, torch.Tensor) for value in params)
    )


def fire_step(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: FireState,
    params: FireParameters,
    ptr: torch.Tensor,
    members: torch.Tensor,
) -> tuple[torch.Tensor, FireState]:
    """:func:`nvalchemi_ase.ops.fire.fire_step` for the systems in ``members`` (``[B]`` bool), the
    others unchanged; returns new tensors. ``ptr`` ``[B + 1]`` (int64) bounds each system's rows.
    Inputs as :func:`fits` accepts."""
    num = state.dt.shape[0]
    new_positions = POSITIONS.like(positions)
    new_velocities = VELOCITIES.like(state.velocities)
    new_dt = SYSTEM_VALUES.like(state.dt)
    new_a = SYSTEM_VALUES.like(state.a)
    new_n = SYSTEM_VALUES.like(state.n)
    inputs = [
        view(ptr),
        view(members),
        view(positions, wp.vec3d),
        view(forces, wp.vec3d),
        view(state.velocities, wp.vec3d),
        view(state.dt),
        view(state.a),
        view(state.n),
        *(float64_scalar(float(value)) for value in params),
        view(new_positions, wp.vec3d),
        view(new_velocities, wp.vec3d),
        view(new_dt),
        view(new_a),
        view(new_n),
    ]
    # a thread's share of the systems holds about ATOMS_PER_THREAD atoms or more
    per_thread = max(1, -(-num * ATOMS_PER_THREAD // max(positions.shape[0], 1)))
    launch(_fire_step, num, inputs, positions.device, per_thread)
    return new_positions, FireState(new_velocities, new_dt, new_a, new_n)
