"""The pair kernel over a half list on a CPU: each pair visited once, its partner's share written too.

The full-list kernel (:mod:`~nvalchemi_ase.models.pair_kernel`) visits every
pair twice and writes only its own atom. Here each pair of the half list
(:mod:`nvalchemi_ase.neighbors.half`: the partner ``j`` is an earlier row of
the same system, ``j < i``) is visited once, by row ``i``, and Newton's third
law gives the partner its share: ``F_j -= du·d``, half the pair energy and half
its virial to each atom, as ASE splits them. Arithmetic is in float64, the
terms are the same ``wp.func`` as the full kernel's.

Deterministic whatever the number of threads, without atomics: a row's
partners are earlier rows of its system, so when a system's rows run in order
in one launch each row is untouched until its own turn (it sets its slots,
then later rows add to them), and every atom's sums come in the same order.

* A batch of many systems is split over threads at system boundaries (a
  system's writes stay in its own launch); nothing else is needed.
* A large system (over :data:`LARGE_SYSTEM` rows and a quarter of the batch)
  makes the rows :data:`CHUNKS` chunks of about equal visits, a number that
  does not depend on the threads. Each chunk writes into buffers of its own
  (cleared from its lowest partner up to its first row), and a last pass adds
  them up in chunk order; the threads take whole chunks
  (:mod:`~nvalchemi_ase.models.pair_half_chunks`).

A visit reads and writes rows directly (:mod:`~nvalchemi_ase.ops.direct_access`:
no negative-index wrap, no run-time strides), and positions, image vectors and
forces as padded 32-byte rows ``(x, y, z, 0)``: aligned loads that never straddle
a cache line, the same bits (the padding adds ``0²`` to ``r²``). Positions are
padded and forces unpadded by each share for its own rows (by one pass for a
chunked system), so no other thread waits for them. Together 1.3x a visit at
bench_lammps's workloads, one thread (see the benchmarks page).

Only for a list that serves many steps on a CPU (its half is made once per
list); CUDA keeps the full-list kernel (a half list there would need float
atomics, whose order is not fixed).
"""

from __future__ import annotations

import functools
import itertools
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.models.pair_half_chunks import TOTALS_ROWS_PER_THREAD, chunked_sums
from nvalchemi_ase.models.pair_kernel import Parameters
from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.neighbors.half import HalfList
from nvalchemi_ase.ops import direct_access as direct
from nvalchemi_ase.ops import warp_launch
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.verlet_kernel import SecondKick, kick
from nvalchemi_ase.ops.warp_launch import descriptor, float64_scalar, float64_tensor, launch_shares

wp = initialised_warp()

CHUNKS = 4
"""Chunks of one large system, each with its own buffers (fixed: results must not depend on threads)."""

REBALANCE_AFTER = 16
"""Rewrites of a half list after which its plan of whole systems is made again (see ``Plan.holds``)."""

LARGE_SYSTEM = 512
"""Rows above which a system holding more than a quarter of the rows is cut into chunks.

A constant, not the threads' row grain: which atoms share buffers decides the bits."""


@functools.cache
def _kernel(terms: Any, with_virials: bool, atom_energies: bool) -> Any:
    """The kernel for ``terms``; ``atom_energies`` False: each row sums its pairs' whole energies and
    writes no partner's (the rows add up to the system's energy, but are not per-atom energies)."""

    @wp.kernel(enable_backward=False)
    def half_pair_sums(
        first: wp.int32,
        positions: wp.array(dtype=wp.vec4d),
        matrix: wp.array2d(dtype=wp.int32),
        counts: wp.array(dtype=wp.int32),
        slots: wp.array2d(dtype=wp.int32),
        table: wp.array(dtype=wp.vec4d),
        cell_rows: wp.array2d(dtype=wp.vec3d),
        batch_idx: wp.array(dtype=wp.int64),
        params: wp.array(dtype=Parameters),
        cutoff2: wp.float64,
        energies: wp.array(dtype=wp.float64),
        forces: wp.array(dtype=wp.vec4d),
        virials: wp.array(dtype=wp.mat33d),
    ):
        i = first + wp.tid()
        here = positions[i]
        b = batch_idx[i]
        rows = cell_rows[b, 0] + cell_rows[b, 1] + cell_rows[b, 2]
        # 0, or NaN when this atom's position or its system's cell is not finite (see pair_kernel);
        # a bad partner reaches this atom through its pair vector, and this atom its partners
        nan = wp.float64(0.0) * (wp.dot(here, here) + wp.dot(rows, rows))
        # no row has written here yet (partners are earlier rows): set, later rows add
        energies[i] = nan
        forces[i] = wp.vec4d(nan, nan, nan, nan)
        if wp.static(with_virials):
            virials[i] = wp.mat33d(nan, nan, nan, nan, nan, nan, nan, nan, nan)
        energy = wp.float64(0.0)
        force = wp.vec4d()
        virial = wp.mat33d()
        p = params[0]
        count = counts[i]
        k = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
        while k < count:  # the pair's rows read and written directly (see ops.direct_access)
            j = direct.entry(matrix, i, k)
            d = direct.padded_at(positions, j) - here + direct.padded_at(table, direct.entry(slots, i, k))
            r2 = wp.dot(d, d)  # the padding adds 0²: the bits of (x² + y²) + z²
            inside = wp.where(r2 <= cutoff2, wp.float64(1.0), wp.float64(0.0))  # branch-free
            t = terms(r2, p)
            du = t[1] * inside
            f = du * d
            force += f
            direct.subtract_padded(forces, j, f)
            if wp.static(atom_energies):
                u = wp.float64(0.5) * t[0] * inside  # half of the pair's energy to each atom, as ASE
                energy += u
                direct.add_scalar(energies, j, u)
            else:
                energy += t[0] * inside
            if wp.static(with_virials):
                d3 = wp.vec3d(d[0], d[1], d[2])
                v = (wp.float64(0.5) * du) * wp.outer(d3, d3)
                virial += v
                direct.add_matrix(virials, j, v)
            k += 1
        # last: an image of this atom itself (a small cell) wrote its partner's share here meanwhile
        energies[i] = energies[i] + energy
        forces[i] = forces[i] + force
        if wp.static(with_virials):
            virials[i] = virials[i] + virial

    return half_pair_sums


@wp.kernel(enable_backward=False)
def _padded(first: wp.int32, rows: wp.array(dtype=wp.vec3d), padded: wp.array(dtype=wp.vec4d)):
    """``padded[i] = (rows[i], 0)``: the pair kernel reads 32-byte rows (see half_pair_sums)."""
    i = first + wp.tid()
    r = rows[i]
    padded[i] = wp.vec4d(r[0], r[1], r[2], wp.float64(0.0))


@wp.kernel(enable_backward=False)
def _system_sums(
    first: wp.int32,
    starts: wp.array(dtype=wp.int64),
    values: wp.array(dtype=wp.float64),
    sums: wp.array(dtype=wp.float64),
):
    """``sums[b]``: system ``b``'s rows of ``values`` added in row order from 0, the bits of
    :func:`~nvalchemi_ase.ops.segment_sum` (torch's ``index_add_`` adds in index order on a CPU)."""
    b = first + wp.tid()
    total = wp.float64(0.0)
    i = starts[b]
    while i < starts[b + 1]:
        total += values[i]
        i += wp.int64(1)
    sums[b] = total


@wp.kernel(enable_backward=False)
def _system_sums_bounds(
    first: wp.int32,
    starts: wp.array(dtype=wp.int64),
    values: wp.array(dtype=wp.float64),
    sums: wp.array(dtype=wp.float64),
    forces: wp.array(dtype=wp.vec3d),
    bounds: wp.array(dtype=wp.float64),
):
    """``_system_sums``, and ``bounds[b]``: system ``b``'s largest absolute force component, NaN when
    one of its components or its energy is not finite (:data:`~nvalchemi_ase.data.fields.FORCES_BOUND`)."""
    b = first + wp.tid()
    total = wp.float64(0.0)
    top = wp.float64(0.0)
    poison = wp.float64(0.0)  # 0, or NaN once a component is not finite (0·±Inf, 0·NaN)
    i = starts[b]
    while i < starts[b + 1]:
        total += values[i]
        f = forces[i]
        top = wp.max(top, wp.max(wp.max(wp.abs(f[0]), wp.abs(f[1])), wp.abs(f[2])))
        poison += wp.float64(0.0) * (f[0] + f[1] + f[2])
        i += wp.int64(1)
    sums[b] = total
    bounds[b] = top + poison + wp.float64(0.0) * total


@wp.kernel(enable_backward=False)
def _unpadded(first: wp.int32, padded: wp.array(dtype=wp.vec4d), rows: wp.array(dtype=wp.vec3d)):
    """``rows[i] = padded[i][:3]``."""
    i = first + wp.tid()
    r = padded[i]
    rows[i] = wp.vec3d(r[0], r[1], r[2])


@wp.kernel(enable_backward=False)
def _unpadded_kicked(
    first: wp.int32,
    padded: wp.array(dtype=wp.vec4d),
    rows: wp.array(dtype=wp.vec3d),
    velocities: wp.array(dtype=wp.vec3d),
    masses: wp.array(dtype=wp.float64),
    half_dt: wp.float64,
    kicked: wp.array(dtype=wp.vec3d),
):
    """``rows[i] = padded[i][:3]``, and the velocities kicked by those forces (see ``SecondKick``)."""
    i = first + wp.tid()
    r = padded[i]
    force = wp.vec3d(r[0], r[1], r[2])
    rows[i] = force
    kicked[i] = kick(velocities[i], force, masses[i], half_dt)


class Plan:
    """How a half list's rows are launched on ``threads`` threads.

    ``shares`` hold ``(first, rows, chunk)`` ranges grouped per thread. With
    ``starts`` None the ranges are whole systems, all writing to the outputs;
    else ``starts`` ``[C + 1]`` are the chunks' first rows and ``cleared`` ``[C]``
    the lowest row each chunk writes to (its rows' lowest partner), int32.
    ``table`` is the list's table of image vectors as padded rows ``(x, y, z, 0)``;
    ``system_starts`` int64 ``[B + 1]`` the systems' first rows, and ``systems``
    the ``(first, count)`` systems each share holds (ranges of whole systems only).
    """

    def __init__(
        self,
        half: HalfList,
        shares: list[list[tuple[int, int, int]]],
        starts: torch.Tensor | None = None,
        cleared: torch.Tensor | None = None,
    ) -> None:
        self.table = half.table  # padded rows already
        self.system_starts = torch.as_tensor(half.system_starts, dtype=torch.int64)
        self.systems = [] if starts is not None else _share_systems(half.system_starts, shares)
        self.shares, self.starts, self.cleared = shares, starts, cleared
        self.cleared_rows: list[int] = [] if cleared is None else cleared.tolist()  # read on the host
        # the same argument objects at every call, so the recorded launches are found again
        self.chunk_numbers = [] if starts is None else [wp.int32(c) for c in range(starts.shape[0] - 1)]
        self.chunk_views: dict[tuple, list[list[Any]]] = {}  # per set of chunk buffers (by address)
        self.rewrites = half.rewrites

    def holds(self, half: HalfList) -> bool:
        """Whether this plan still serves ``half`` after its rows were rewritten in place.

        Chunks are cut at equal numbers of visits and clear from their rows' lowest partner:
        made again after any rewrite. Shares of whole systems stay right whatever their rows
        hold; only the balance of visits between the threads may drift, so they are made again
        after :data:`REBALANCE_AFTER` rewrites (a plan costs ~0.1 ms, a rewrite of one system's
        rows about as much)."""
        if self.starts is not None:
            return self.rewrites == half.rewrites
        return half.rewrites - self.rewrites < REBALANCE_AFTER


def _share_systems(
    system_starts: np.ndarray, shares: list[list[tuple[int, int, int]]]
) -> list[tuple[int, int]]:
    """The ``(first, count)`` systems of each share of whole systems (its first row is a system's)."""
    edges = np.searchsorted(system_starts, [share[0][0] for share in shares] + [system_starts[-1]])
    return [(int(a), int(b - a)) for a, b in itertools.pairwise(edges)]


def _plan(half: HalfList, threads: int) -> Plan:
    key = (threads, warp_launch.ROWS_PER_THREAD, LARGE_SYSTEM)
    found = half.plans.get(key)
    if found is None or not found.holds(half):
        found = half.plans[key] = _made_plan(half, threads)
    return found


def _made_plan(half: HalfList, threads: int) -> Plan:
    starts = half.system_starts
    rows = int(starts[-1])
    visits = np.concatenate(([0], np.cumsum(half.host_counts)))
    per_thread = warp_launch.ROWS_PER_THREAD
    largest = int(np.diff(starts).max(initial=0))
    if largest > LARGE_SYSTEM and largest * 4 > rows:
        targets = visits[-1] * np.arange(1, CHUNKS) / CHUNKS
        bounds = np.array([0, *np.searchsorted(visits, targets).tolist(), rows])
        cleared = np.minimum(bounds[:-1], np.minimum.reduceat(half.lowest.cpu().numpy(), bounds[:-1]))
        chunks = [(int(a), int(b - a), c) for c, (a, b) in enumerate(itertools.pairwise(bounds))]
        used = max(1, min(threads, CHUNKS))
        groups = [chunks[CHUNKS * t // used : CHUNKS * (t + 1) // used] for t in range(used)]
        as_int32 = functools.partial(torch.as_tensor, dtype=torch.int32)
        return Plan(half, groups, as_int32(bounds), as_int32(cleared))
    used = max(1, min(threads, rows // per_thread, starts.size - 1))
    # share boundaries at the system starts nearest to equal numbers of visits
    targets = visits[-1] * np.arange(1, used) / used
    at = np.searchsorted(visits[starts], targets)
    bounds = sorted({0, rows, *starts[np.clip(at, 0, starts.size - 1)].tolist()})
    return Plan(half, [[(a, b - a, 0)] for a, b in itertools.pairwise(bounds)])


def half_pair_sums(
    terms: Any,
    params: torch.Tensor,
    positions: torch.Tensor,
    neighbors: Any,
    cutoff: float,
    with_virials: bool = True,
    atom_energies: bool = True,
    system_energies: torch.Tensor | None = None,
    second_kick: SecondKick | None = None,
    forces_bound: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`~nvalchemi_ase.models.pair_kernel.pair_sums` over ``neighbors.half`` (a CPU list reused
    over steps; ``params`` padded to the kernel's length, ``positions`` float64): the same results to
    round-off, the same bits on any number of threads.

    ``atom_energies`` False: the first result holds each row's whole pair energies, which add up to
    its system's energy but are not per-atom energies (no partner's share written: a twelfth of a
    visit's work). ``system_energies`` (float64 ``[B]``) is filled with each system's sum of the
    first result, added in row order: by each share for its own systems, while their rows are
    still in its core's cache. ``second_kick``, likewise, is done as the forces are written: by each
    share for its rows, or by the chunks' last pass (``second_kick.taken`` is then True).
    ``forces_bound`` (float64 ``[B]``, with ``system_energies``) is filled with each system's
    :data:`~nvalchemi_ase.data.fields.FORCES_BOUND`, by each share for its own systems too."""
    if forces_bound is not None and system_energies is None:
        raise ValueError("forces_bound is filled from the system energies: pass system_energies too")
    half: HalfList = neighbors.half
    if not direct.contiguous(half.matrix, half.slots):
        raise ValueError("the half list's matrix and slots must be C-contiguous")
    device = positions.device
    n = positions.shape[0]
    plan = _plan(half, torch.get_num_threads())
    cell = float64_tensor(neighbors.cell)  # held while the kernel runs (views hold no tensor)
    padded = [
        _PADDED_POSITIONS.take((n, 4), torch.float64, device),
        _PADDED_FORCES.take((n, 4), torch.float64, device),
    ]
    common = [
        view(padded[0], wp.vec4d),
        view(half.matrix),
        view(half.counts),
        view(half.slots),
        view(plan.table, wp.vec4d),
        view(cell, wp.vec3d),
        view(neighbors.batch_idx),
        descriptor(params.view(1, -1), Parameters),
        float64_scalar(cutoff * cutoff),
    ]
    kernel = _kernel(terms, with_virials, atom_energies)
    energies = _ENERGIES.take((n,), torch.float64, device)
    forces = _FORCES.take((n, 3), torch.float64, device)
    virials = _VIRIALS.take((n, 3, 3), torch.float64, device) if with_virials else _no_virials(device)
    outputs = [view(energies), view(forces, wp.vec3d), view(virials, wp.mat33d)]
    positions = positions.contiguous()  # held while the kernels run (a copy when it was not)
    pad = [view(positions, wp.vec3d), common[0]]
    totals = (
        None if system_energies is None else [view(plan.system_starts), outputs[0], view(system_energies)]
    )
    if totals is not None and forces_bound is not None:  # one pass for both
        totals, totals_kernel = [*totals, outputs[1], view(forces_bound)], _system_sums_bounds
    else:
        totals_kernel = _system_sums
    if plan.starts is None:  # each share pads its systems' positions, sums them, unpads their forces
        unpad = [view(padded[1], wp.vec4d), outputs[1]]
        sums = [*common, outputs[0], unpad[0], outputs[2]]
        unpadded = _unpadded
        if second_kick is not None:
            unpadded, unpad = _unpadded_kicked, [*unpad, *second_kick.arguments()]
            second_kick.taken = True
        shares = []
        for share, (first_system, systems) in zip(plan.shares, plan.systems, strict=True):
            launches: list[tuple[Any, int, int, list[Any]]] = []
            for first, count, _ in share:
                launches += [
                    (_padded, first, count, pad),
                    (kernel, first, count, sums),
                    (unpadded, first, count, unpad),
                ]
            if totals is not None:  # the systems' energies and forces are still in this core's cache
                launches.append((totals_kernel, first_system, systems, totals))
            shares.append(launches)
        launch_shares(shares, device)
    else:  # every chunk reads every position: padded first; the chunks' last pass unpads the forces
        warp_launch.launch(_padded, n, pad, device, rows_per_thread=TOTALS_ROWS_PER_THREAD)
        chunked_sums(kernel, plan, common, outputs, n, with_virials, device, second_kick)
        if totals is not None:
            systems = plan.system_starts.shape[0] - 1
            warp_launch.launch(totals_kernel, systems, totals, device, rows_per_thread=TOTALS_ROWS_PER_THREAD)
    return energies, forces, virials if with_virials else None


_ENERGIES, _FORCES, _VIRIALS = Buffers(), Buffers(), Buffers()
_PADDED_POSITIONS, _PADDED_FORCES = Buffers(1), Buffers(1)


@functools.cache
def _no_virials(device: torch.device) -> torch.Tensor:
    """What the kernel gets for virials it does not write (never read: no data)."""
    return torch.empty(0, 3, 3, dtype=torch.float64, device=device)
