"""L-BFGS, per system, exactly as ``ase.optimize.LBFGS`` without line search.

Per system, with x its positions, g = −F its gradient and k its iteration
count (0 on the first step)::

    if k > 0:  append s = x − x₀, y = g − g₀, ρ = 1 / (y·s) to the history
               (no curvature check); drop the oldest pair once k > memory
    two-loop recursion over the m = min(memory, k) stored pairs, newest first:
        q ← g;  for i = m−1 … 0:  aᵢ = ρᵢ sᵢ·q;  q ← q − aᵢ yᵢ
        z ← q / alpha             (fixed initial inverse Hessian I/alpha)
        for i = 0 … m−1:  bᵢ = ρᵢ yᵢ·z;  z ← z + sᵢ (aᵢ − bᵢ)
    dx = −z;  if max_j |dx_j| ≥ maxstep (j over atoms):  dx ← dx · maxstep / max_j |dx_j|
    x₀, g₀ ← x, g;  x ← x + damping · dx;  k ← k + 1

Batching: the history is stored per atom, ``s, y [N, memory, 3]`` and
``rho [B, memory]``, oldest pair first. Slots a system has not filled are
zero, so in the recursion they change nothing, bit for bit; every system runs
the same loop and no padding to the largest system is needed.

Reference: ASE's ``ase/optimize/lbfgs.py`` and ``ase/_4/optimize/lbfgs.py``
(3.29); J. Nocedal, Math. Comp. 35, 773 (1980), doi:10.1090/S0025-5718-1980-0572855-7.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nvalchemi_ase.ops.bfgs import limit_longest_step
from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum, xyz_sum


class LBFGSState(NamedTuple):
    """Per-system L-BFGS state.

    ``s``, ``y [N, memory, 3]`` (Å, eV/Å) and ``rho [B, memory]`` (1/eV), oldest
    first, zeros where unfilled; ``iteration [B]`` long (ASE's ``state.iteration``);
    ``positions0``, ``forces0 [N, 3]`` (ASE's ``r0``/``f0``).
    """

    s: torch.Tensor
    y: torch.Tensor
    rho: torch.Tensor
    iteration: torch.Tensor
    positions0: torch.Tensor
    forces0: torch.Tensor


def _dot(a: torch.Tensor, b: torch.Tensor, batch_idx: torch.Tensor, num_systems: int) -> torch.Tensor:
    """Per-system dot product of ``[N, 3]`` vectors, ``[B]``."""
    return segment_sum(xyz_sum(a * b), batch_idx, num_systems)


def append_pair(
    state: LBFGSState, s: torch.Tensor, y: torch.Tensor, rho: torch.Tensor, batch_idx: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The history with ``(s, y, rho)`` appended for systems with ``iteration > 0``; the oldest pair
    is dropped (shifting the others down) where ``iteration > memory``. Returns ``(s, y, rho)``."""
    memory = state.rho.shape[1]
    if memory == 0:
        return state.s, state.y, state.rho
    slot = torch.clamp(state.iteration - 1, max=memory - 1)
    write = (state.iteration > 0).unsqueeze(1) & (
        torch.arange(memory, device=slot.device) == slot.unsqueeze(1)
    )
    full = state.iteration > memory
    atom_write = segment_broadcast(write, batch_idx).unsqueeze(2)
    atom_full = segment_broadcast(full, batch_idx).view(-1, 1, 1)
    s_all = torch.where(atom_full, state.s.roll(-1, dims=1), state.s)
    y_all = torch.where(atom_full, state.y.roll(-1, dims=1), state.y)
    rho_all = torch.where(full.unsqueeze(1), state.rho.roll(-1, dims=1), state.rho)
    s_all = torch.where(atom_write, s.unsqueeze(1), s_all)
    y_all = torch.where(atom_write, y.unsqueeze(1), y_all)
    rho_all = torch.where(write, rho.unsqueeze(1), rho_all)
    return s_all, y_all, rho_all


def two_loop(
    gradient: torch.Tensor,
    s: torch.Tensor,
    y: torch.Tensor,
    rho: torch.Tensor,
    inverse_alpha: float,
    batch_idx: torch.Tensor,
    loops: int,
) -> torch.Tensor:
    """The two-loop recursion ``z = H g`` per system over the first ``loops`` history slots, ``[N, 3]``.

    ``inverse_alpha`` is the initial inverse Hessian's diagonal, Å²/eV (ASE's
    ``1.0 / alpha``). ``loops`` must be at least every system's filled slot
    count; unfilled (zero) slots leave ``q`` and ``z`` unchanged.
    """
    num_systems = rho.shape[0]
    q = gradient
    a = [gradient.new_zeros(num_systems)] * loops
    for i in range(loops - 1, -1, -1):
        a[i] = rho[:, i] * _dot(s[:, i], q, batch_idx, num_systems)
        q = q - segment_broadcast(a[i], batch_idx).unsqueeze(1) * y[:, i]
    z = q * inverse_alpha
    for i in range(loops):
        b = rho[:, i] * _dot(y[:, i], z, batch_idx, num_systems)
        z = z + s[:, i] * segment_broadcast(a[i] - b, batch_idx).unsqueeze(1)
    return z


def lbfgs_step(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: LBFGSState,
    alpha: float,
    maxstep: torch.Tensor | float,
    damping: torch.Tensor | float,
    batch_idx: torch.Tensor,
    loops: int | None = None,
) -> tuple[torch.Tensor, LBFGSState]:
    """One L-BFGS step for every system; returns new positions ``[N, 3]`` and state (no host sync).

    Parameters
    ----------
    positions, forces
        ``[N, 3]``, Å and eV/Å (the forces at ``positions``).
    state
        :class:`LBFGSState` of the previous step.
    alpha
        Initial Hessian guess, eV/Å² (the inverse Hessian starts as I/alpha).
    maxstep
        Largest displacement of any atom before damping, Å; a float or ``[B]``.
    damping
        Factor on the (capped) step; a float or ``[B]``.
    batch_idx
        ``[N]`` system of each atom.
    loops
        A host-side bound on ``min(memory, iteration)`` over the systems (saves
        visiting slots nobody filled yet); ``None``: all ``memory`` slots.
    """
    direction, new_state = lbfgs_direction(positions, forces, state, alpha, batch_idx, loops)
    displacements = limit_longest_step(direction, maxstep, batch_idx, state.rho.shape[0])
    if isinstance(damping, torch.Tensor) and damping.dim() > 0:
        damping = segment_broadcast(damping, batch_idx).unsqueeze(1)
    return positions + displacements * damping, new_state


def lbfgs_direction(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: LBFGSState,
    alpha: float,
    batch_idx: torch.Tensor,
    loops: int | None = None,
) -> tuple[torch.Tensor, LBFGSState]:
    """The history update and ASE's step direction ``p = −H g`` ``[N, 3]`` (uncapped), with the new state.

    The state is what :func:`lbfgs_step` leaves (the pair appended, ``iteration + 1``,
    ``positions0``/``forces0`` set to ``positions``/``forces``); the parameters are as there.
    """
    num_systems, memory = state.rho.shape
    gradient = -forces
    s = positions - state.positions0
    y = gradient - -state.forces0
    rho = 1.0 / _dot(y, s, batch_idx, num_systems)
    s_all, y_all, rho_all = append_pair(state, s, y, rho, batch_idx)
    loops = memory if loops is None else min(loops, memory)
    z = two_loop(gradient, s_all, y_all, rho_all, 1.0 / alpha, batch_idx, loops)
    return -z, LBFGSState(s_all, y_all, rho_all, state.iteration + 1, positions, forces)
