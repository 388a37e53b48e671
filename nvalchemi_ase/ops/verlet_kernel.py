"""Velocity Verlet's moves as warp kernels, the Verlet-skin test folded into the drift.

:mod:`nvalchemi_ase.ops.verlet` writes each move as one torch operation; a step
of NVE then also asks the neighbour list whether an atom moved past half its
skin, five more operations over the positions. On a small system each of those
costs more than its arithmetic, and on a large one each runs on one thread
(below torch's parallel grain). Here the first half kick, the drift and the
skin test are one kernel, the second half kick another; both split their rows
over torch's threads on a CPU (:func:`~nvalchemi_ase.ops.warp_launch.launch`)
and write tensors no one else holds (engines never write into the batch's
tensors): a few reused in turn (:class:`~nvalchemi_ase.ops.buffers.Buffers`).

Per atom the arithmetic is that of the torch moves, in the same order:
``v + (½ dt · F) / m`` (``torch.addcdiv``), ``r + dt · v`` (``torch.add`` with
``alpha``), and the squared displacement ``(dx² + dy²) + dz²`` from the
positions of the last neighbour-list build, compared with ``(skin / 2)²``.
Float64 only; other dtypes take the torch moves.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.skin_kernel import past
from nvalchemi_ase.ops.warp_launch import float64_scalar, launch

wp = initialised_warp()

ROWS_PER_THREAD = 32768
"""On a CPU, atoms per thread below which one thread does all the rows.

A row is a few flops and handing rows to a second thread costs ~50 µs: on 2 cores the
fused kick, drift and skin test took 52 µs on one thread and 97 µs split in two at 6,912
atoms, 90 against 146 µs at 13,824 (the torch moves and skin test: 178 and 801 µs)."""


@wp.func
def kick(v: wp.vec3d, f: wp.vec3d, m: wp.float64, half_dt: wp.float64) -> wp.vec3d:
    """``v + (½ dt · F) / m`` component by component (``half_dt`` is ½ dt), torch's ``addcdiv`` bits."""
    return wp.vec3d(v[0] + half_dt * f[0] / m, v[1] + half_dt * f[1] / m, v[2] + half_dt * f[2] / m)


@functools.cache
def _half_kick_kernel(masked: bool) -> Any:
    @wp.kernel(enable_backward=False)
    def half_kick(
        first: wp.int32,
        velocities: wp.array(dtype=wp.vec3d),
        forces: wp.array(dtype=wp.vec3d),
        masses: wp.array(dtype=wp.float64),
        half_dt: wp.float64,
        system: wp.array(dtype=wp.int64),
        members: wp.array(dtype=wp.bool),
        kicked: wp.array(dtype=wp.vec3d),
    ):
        i = first + wp.tid()
        v = velocities[i]
        if wp.static(masked):
            if not members[system[i]]:
                kicked[i] = v
                return
        kicked[i] = kick(v, forces[i], masses[i], half_dt)

    return half_kick


@functools.cache
def _kick_drift_kernel(test_skin: bool, masked: bool) -> Any:
    @wp.kernel(enable_backward=False)
    def kick_drift(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec3d),
        velocities: wp.array(dtype=wp.vec3d),
        forces: wp.array(dtype=wp.vec3d),
        masses: wp.array(dtype=wp.float64),
        half_dt: wp.float64,
        dt: wp.float64,
        reference: wp.array(dtype=wp.vec3d),
        limit2: wp.float64,
        moved: wp.array(dtype=wp.int32),
        system: wp.array(dtype=wp.int64),
        members: wp.array(dtype=wp.bool),
        new_positions: wp.array(dtype=wp.vec3d),
        new_velocities: wp.array(dtype=wp.vec3d),
    ):
        i = first + wp.tid()
        v = velocities[i]
        r = positions[i]
        stays = False
        if wp.static(masked):
            stays = not members[system[i]]
        if not stays:
            v = kick(v, forces[i], masses[i], half_dt)
            r = wp.vec3d(r[0] + dt * v[0], r[1] + dt * v[1], r[2] + dt * v[2])
        new_velocities[i] = v
        new_positions[i] = r
        if wp.static(test_skin):
            if past(r, reference[i], limit2):
                moved[0] = 1  # every writer writes the same value: no race on the result

    return kick_drift


POSITIONS = Buffers()
"""The new positions of :func:`kick_drift`."""
VELOCITIES = Buffers()
"""The new velocities of :func:`kick_drift` and :func:`half_kick` (NVE's torch half kick writes here too)."""


def fits(*tensors: torch.Tensor) -> bool:
    """Whether the kernels take these tensors: float64, contiguous, without autograd history."""
    return all(t.dtype == torch.float64 and t.is_contiguous() and not t.requires_grad for t in tensors)


TORCH_GRAIN = 32768
"""Elements from which torch runs a CPU elementwise operation on its OpenMP threads
(``at::internal::GRAIN_SIZE``). Those threads and the threads of our split launches
(:mod:`~nvalchemi_ase.ops.kernel_threads`) then take cores from each other, OpenMP's spinning
while idle: NVE's torch half kick of 512 x 32 atoms took 0.5 to 2.7 ms a call in a run against
47 µs alone, and shortening our threads' polling did not help where ``OMP_WAIT_POLICY=PASSIVE`` did."""


def torch_runs_alone(tensor: torch.Tensor) -> bool:
    """Whether torch computes an elementwise operation over ``tensor`` on the calling thread alone."""
    return tensor.numel() < TORCH_GRAIN or torch.get_num_threads() == 1


Members = tuple[torch.Tensor, torch.Tensor]
"""``(system of each atom [N] int64, members [B] bool)``: the systems a masked move moves."""


def half_kick(
    velocities: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    dt: float,
    members: Members | None = None,
) -> torch.Tensor:
    """``v + ½ dt F/m`` as a new ``[N, 3]`` tensor (float64, contiguous inputs: see :func:`fits`);
    with ``members``, the other systems' velocities are copied unchanged."""
    kicked = VELOCITIES.like(velocities)
    system, chosen = _members(members, velocities.device)
    inputs = [
        view(velocities, wp.vec3d),
        view(forces, wp.vec3d),
        view(masses),
        float64_scalar(0.5 * dt),
        view(system),
        view(chosen),
        view(kicked, wp.vec3d),
    ]
    kernel = _half_kick_kernel(members is not None)
    launch(kernel, velocities.shape[0], inputs, velocities.device, ROWS_PER_THREAD)
    return kicked


def kick_drift(
    positions: torch.Tensor,
    velocities: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    dt: float,
    skin_test: tuple[torch.Tensor, float, torch.Tensor] | None = None,
    members: Members | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Half kick then drift: the new ``(positions, velocities)``, each ``[N, 3]``.

    ``skin_test``: ``(reference positions [N, 3], limit, flag)``; the kernel then
    sets ``flag[0]`` (int32, which the caller cleared) to 1 when an atom's new
    position lies farther than ``limit`` from its reference. ``members``: only
    those systems move; the others' rows are copied unchanged (and skin-tested
    too, so the flag covers every new position).
    """
    new_positions = POSITIONS.like(positions)
    new_velocities = VELOCITIES.like(velocities)
    if skin_test is None:
        reference, limit2, flag = positions, 0.0, _no_flag(positions.device)
    else:
        reference, limit, flag = skin_test
        limit2 = limit * limit
    system, chosen = _members(members, positions.device)
    inputs = [
        view(positions, wp.vec3d),
        view(velocities, wp.vec3d),
        view(forces, wp.vec3d),
        view(masses),
        float64_scalar(0.5 * dt),
        float64_scalar(dt),
        view(reference, wp.vec3d),
        float64_scalar(limit2),
        view(flag),
        view(system),
        view(chosen),
        view(new_positions, wp.vec3d),
        view(new_velocities, wp.vec3d),
    ]
    kernel = _kick_drift_kernel(skin_test is not None, members is not None)
    launch(kernel, positions.shape[0], inputs, positions.device, ROWS_PER_THREAD)
    return new_positions, new_velocities


class SecondKick:
    """A second half kick ``v + ½ dt F/m`` that a force kernel may do as it writes the forces.

    NVE offers one to a model that takes it (:meth:`~nvalchemi_ase.models.pair.PairPotential.offer_kick`):
    the CPU half-list pair kernel then kicks each share's rows right after summing their forces, while
    they are still in its core's cache, instead of a separate pass over every atom after the model
    returns (a tenth of a step at 32 x 108 atoms). The same arithmetic as :func:`half_kick` (the
    same bits). ``kicked`` holds the result once ``taken`` is True; an engine whose offer was not
    taken (the full-list kernel, as on CUDA, takes none) kicks as usual.
    """

    __slots__ = ("half_dt", "kicked", "masses", "taken", "velocities")

    def __init__(self, velocities: torch.Tensor, masses: torch.Tensor, dt: float) -> None:
        self.velocities, self.masses = velocities, masses
        self.half_dt = float64_scalar(0.5 * dt)
        self.kicked: torch.Tensor | None = None
        """The kicked velocities ``[N, 3]``, made when a kernel asks for :meth:`arguments`."""
        self.taken = False

    def arguments(self) -> list[Any]:
        """The kernel arguments after the forces: velocities, masses, ½ dt, the kicked velocities."""
        self.kicked = VELOCITIES.like(self.velocities)
        return [view(self.velocities, wp.vec3d), view(self.masses), self.half_dt, view(self.kicked, wp.vec3d)]


def _members(members: Members | None, device: torch.device) -> Members:
    """The mask's arrays, or placeholders the unmasked kernels never read."""
    return _placeholder(device) if members is None else members


@functools.cache
def _placeholder(device: torch.device) -> Members:
    return torch.zeros(1, dtype=torch.int64, device=device), torch.ones(1, dtype=torch.bool, device=device)


@functools.cache
def _no_flag(device: torch.device) -> torch.Tensor:
    return torch.zeros(1, dtype=torch.int32, device=device)
