"""BFGS, per system, exactly as ``ase.optimize.BFGS`` (dense Hessian, eigen-decomposed every step).

Per system, with x its 3n positions, g = −F its gradient and H its Hessian
(``alpha·I`` at the start, eV/Å²)::

    every step but the first, with Δx = x − x₀, Δg = g − g₀, unless max|Δx| < 1e-7:
        H ← H + Δg Δgᵀ / (Δx·Δg) − (H Δx)(H Δx)ᵀ / (Δx·H Δx)
    H = V diag(ω) Vᵀ;  dx = −V (Vᵀ g / |ω|)
    if max_i |dx_i| ≥ maxstep (i over atoms):  dx ← dx · maxstep / max_i |dx_i|
    x₀, g₀ ← x, g;  x ← x + dx

Batching: each system's 3n coordinates are laid out in a row of width
``D ≥ 3 n_max`` (``[B, D]``, atom after atom, x y z), the Hessians as
``[B, D, D]``. The padding block is ``alpha·I`` and never couples to the real
block (its coordinates, gradients and displacements are zero), so one batched
``torch.linalg.eigh`` serves all systems: ``V (Vᵀg/|ω|)`` is block by block the
same as for each system alone.

Reference: ASE's ``ase/optimize/bfgs.py`` and ``ase/_4/optimize/bfgs.py``
(3.29); J. Nocedal and S. J. Wright, *Numerical Optimization*, 2nd ed.
(Springer, 2006), §6.1, doi:10.1007/978-0-387-40065-5.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, xyz_sum

SAME_CONFIGURATION = 1e-7
"""ASE skips the Hessian update when no coordinate moved more than this, Å."""


class BFGSState(NamedTuple):
    """Per-system BFGS state.

    ``hessian [B, D, D]`` (eV/Å², padded), ``positions0`` and ``forces0 [N, 3]``
    (ASE's ``pos0``/``forces0``), ``started [B]`` bool (False before the first step).
    """

    hessian: torch.Tensor
    positions0: torch.Tensor
    forces0: torch.Tensor
    started: torch.Tensor


def padded_index(batch_idx: torch.Tensor, ptr: torch.Tensor, width: int) -> torch.Tensor:
    """``[N, 3]`` index of each atom's x, y, z in a flattened ``[B, width]`` padded layout."""
    atoms = torch.arange(batch_idx.shape[0], device=batch_idx.device)
    local = atoms - segment_broadcast(ptr, batch_idx)
    first = batch_idx * width + 3 * local
    return first.unsqueeze(1) + torch.arange(3, device=batch_idx.device)


def to_padded(values: torch.Tensor, index: torch.Tensor, num_systems: int, width: int) -> torch.Tensor:
    """Per-atom ``values [N, 3]`` as per-system rows ``[B, width]`` (zeros in the padding)."""
    rows = values.new_zeros(num_systems * width)
    return rows.index_copy(0, index.reshape(-1), values.reshape(-1)).view(num_systems, width)


def from_padded(rows: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Per-system rows ``[B, width]`` back to per-atom values ``[N, 3]``."""
    return rows.reshape(-1).index_select(0, index.reshape(-1)).view(index.shape)


def initial_hessian(num_systems: int, width: int, alpha: float, like: torch.Tensor) -> torch.Tensor:
    """``alpha·I`` for every system, ``[B, width, width]`` (dtype and device of ``like``)."""
    eye = torch.eye(width, dtype=like.dtype, device=like.device) * alpha
    return eye.expand(num_systems, width, width).clone()


def pad_hessian(hessian: torch.Tensor, dofs: torch.Tensor, alpha: float) -> torch.Tensor:
    """Set the padding of ``hessian [B, D, D]`` to ``alpha·I``, given ``dofs [B]`` = 3n per system."""
    width = hessian.shape[-1]
    columns = torch.arange(width, device=hessian.device)
    real = columns < dofs.unsqueeze(1)
    pair = real.unsqueeze(2) & real.unsqueeze(1)
    eye = torch.eye(width, dtype=hessian.dtype, device=hessian.device) * alpha
    return torch.where(pair, hessian, eye)


def update_hessian(
    hessian: torch.Tensor, dpos: torch.Tensor, dgradient: torch.Tensor, skip: torch.Tensor
) -> torch.Tensor:
    """The BFGS update of ``hessian [B, D, D]`` from ``dpos`` and ``dgradient [B, D]``.

    ``H + Δg Δgᵀ / (Δx·Δg) − (H Δx)(H Δx)ᵀ / (Δx·H Δx)``, as ASE writes it;
    unchanged where ``skip [B]``.
    """
    a = xyz_sum(dpos * dgradient)
    dg = torch.bmm(hessian, dpos.unsqueeze(2)).squeeze(2)
    b = xyz_sum(dpos * dg)
    outer_gradient = dgradient.unsqueeze(2) * dgradient.unsqueeze(1)
    outer_dg = dg.unsqueeze(2) * dg.unsqueeze(1)
    updated = hessian + (outer_gradient / a.view(-1, 1, 1) - outer_dg / b.view(-1, 1, 1))
    return torch.where(skip.view(-1, 1, 1), hessian, updated)


def newton_step(hessian: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """``−V (Vᵀ g / |ω|)`` with ``H = V diag(ω) Vᵀ``, per system: ``[B, D]`` Å.

    On CUDA, ``torch.linalg.eigh`` checks its convergence flags on the host:
    one device→host sync per call.
    """
    omega, vectors = torch.linalg.eigh(hessian)
    projected = torch.bmm(gradient.unsqueeze(1), vectors).squeeze(1) / omega.abs()
    return -torch.bmm(vectors, projected.unsqueeze(2)).squeeze(2)


def limit_longest_step(
    displacements: torch.Tensor,
    maxstep: torch.Tensor | float,
    batch_idx: torch.Tensor,
    num_systems: int,
) -> torch.Tensor:
    """ASE's ``determine_step``: a step whose longest atom step L is ≥ maxstep is scaled by maxstep / L.

    ``displacements [N, 3]`` Å; ``maxstep`` a float or ``[B]``. Shared by BFGS and LBFGS.
    """
    longest = segment_max(xyz_sum(displacements.square()), batch_idx, num_systems).clamp(min=0.0).sqrt()
    too_long = longest >= maxstep
    scale = torch.where(too_long, maxstep / torch.where(too_long, longest, 1.0), 1.0)
    return torch.where(
        segment_broadcast(too_long, batch_idx).unsqueeze(1),
        displacements * segment_broadcast(scale, batch_idx).unsqueeze(1),
        displacements,
    )


def bfgs_step(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: BFGSState,
    maxstep: torch.Tensor | float,
    batch_idx: torch.Tensor,
    ptr: torch.Tensor,
) -> tuple[torch.Tensor, BFGSState]:
    """One BFGS step for every system; returns new positions ``[N, 3]`` and state.

    Parameters
    ----------
    positions, forces
        ``[N, 3]``, Å and eV/Å (the forces at ``positions``).
    state
        :class:`BFGSState` of the previous step; the padding of
        ``state.hessian`` must be a non-zero diagonal, uncoupled to the
        real block (``alpha·I``: see :func:`pad_hessian`).
    maxstep
        Largest displacement of any atom, Å; a float or ``[B]``.
    batch_idx, ptr
        ``[N]`` system of each atom; ``[B+1]`` offsets.

    Notes
    -----
    No host sync on CPU; on CUDA, the eigen-decomposition syncs once.
    """
    num_systems, width = state.hessian.shape[0], state.hessian.shape[-1]
    index = padded_index(batch_idx, ptr, width)
    x = to_padded(positions, index, num_systems, width)
    gradient = to_padded(-forces, index, num_systems, width)
    dpos = x - to_padded(state.positions0, index, num_systems, width)
    dgradient = gradient - to_padded(-state.forces0, index, num_systems, width)
    same = dpos.abs().amax(dim=1) < SAME_CONFIGURATION
    hessian = update_hessian(state.hessian, dpos, dgradient, ~state.started | same)
    step = newton_step(hessian, gradient)
    displacements = limit_longest_step(from_padded(step, index), maxstep, batch_idx, num_systems)
    new_state = BFGSState(hessian, positions, forces, torch.ones_like(state.started))
    return positions + displacements, new_state
