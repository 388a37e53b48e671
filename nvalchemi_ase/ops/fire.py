"""FIRE, per system, exactly as ``ase.optimize.FIRE`` (mass-free Euler steps).

Per system, with F the forces and v FIRE's own velocities (flattened over the
system's atoms), on every step but the first::

    P = F·v
    P > 0:  v ← (1 − a) v + a |v| F/|F|;  if n > n_min: dt ← min(dt·finc, dtmax), a ← a·fa;  n ← n + 1
    P ≤ 0:  v ← 0;  a ← astart;  dt ← dt·fdec;  n ← 0

then on every step ``v ← v + dt F``, ``dr = dt v``, scaled down so that
``‖dr‖ ≤ maxstep`` (the norm of the whole system's 3N vector), and ``r ← r + dr``.

ASE's ``downhill_check`` (:func:`fire_downhill_check`, before :func:`fire_step`):
with E the energy at r, on every step but the first::

    E > E_last:  r ← r_last, and the step takes the P ≤ 0 branch (with the forces at the uphill r)

then on every step ``E_last ← E`` (kept when uphill: ASE re-evaluates it at r_last) and ``r_last ← r``.

Reference: E. Bitzek, P. Koskinen, F. Gähler, M. Moseler and P. Gumbsch,
Phys. Rev. Lett. 97, 170201 (2006), doi:10.1103/PhysRevLett.97.170201.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum, xyz_sum


class FireParameters(NamedTuple):
    """Hyper-parameters, each a float or a ``[B]`` tensor (ASE's names)."""

    maxstep: torch.Tensor | float
    dtmax: torch.Tensor | float
    Nmin: torch.Tensor | float
    finc: torch.Tensor | float
    fdec: torch.Tensor | float
    astart: torch.Tensor | float
    fa: torch.Tensor | float


class FireState(NamedTuple):
    """Per-system FIRE state: velocities ``[N, 3]``; dt, a ``[B]``; n ``[B]`` (−1 before the first step)."""

    velocities: torch.Tensor
    dt: torch.Tensor
    a: torch.Tensor
    n: torch.Tensor


class DownhillState(NamedTuple):
    """ASE's ``downhill_check`` memory: last accepted energy ``e_last [B]``, positions ``r_last [N, 3]``."""

    e_last: torch.Tensor
    r_last: torch.Tensor


def fire_uphill(energy: torch.Tensor, e_last: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: systems past their first step whose energy ``[B]`` rose above ``e_last``."""
    return (n >= 0) & (energy > e_last)


def fire_downhill_check(
    positions: torch.Tensor,
    energy: torch.Tensor,
    memory: DownhillState,
    n: torch.Tensor,
    batch_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, DownhillState]:
    """ASE's ``downhill_check``: systems that went uphill go back to ``r_last``.

    Parameters
    ----------
    positions
        ``[N, 3]`` current positions (Å).
    energy
        ``[B]`` energy at ``positions`` (eV), as ASE's ``get_value()``.
    memory
        The last accepted energy and positions.
    n
        ``[B]`` FIRE's step counter (−1 before the first step, which records only).
    batch_idx
        ``[N]`` system of each atom.

    Returns
    -------
    positions, uphill, memory
        The positions the step starts from (``r_last`` for the uphill
        systems), the ``[B]`` uphill mask (pass it to :func:`fire_step`) and
        the new memory (the energy and positions the step starts from).
    """
    uphill = fire_uphill(energy, memory.e_last, n)
    back = segment_broadcast(uphill, batch_idx).unsqueeze(1)
    positions = torch.where(back, memory.r_last, positions)
    return positions, uphill, DownhillState(torch.where(uphill, memory.e_last, energy), positions)


def fire_step(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: FireState,
    params: FireParameters,
    batch_idx: torch.Tensor,
    uphill: torch.Tensor | None = None,
) -> tuple[torch.Tensor, FireState]:
    """One FIRE step for every system; returns new positions and state (no host sync).

    ``uphill`` (``[B]`` bool, from :func:`fire_downhill_check`) sends those
    systems down the P ≤ 0 branch whatever their power.
    """
    num = state.dt.shape[0]
    started = state.n >= 0
    power = segment_sum(xyz_sum(forces * state.velocities), batch_idx, num)
    f_norm = segment_sum(xyz_sum(forces.square()), batch_idx, num).sqrt()
    v_norm = segment_sum(xyz_sum(state.velocities.square()), batch_idx, num).sqrt()

    downhill = started & (power > 0.0)
    if uphill is not None:
        downhill = downhill & ~uphill
    uphill = started & ~downhill
    mixing = torch.where(downhill, state.a, 0.0)
    scale = torch.where(downhill, state.a * v_norm / torch.where(f_norm > 0, f_norm, 1.0), 0.0)
    keep = torch.where(uphill, 0.0, 1.0 - mixing)
    velocities = (
        segment_broadcast(keep, batch_idx).unsqueeze(1) * state.velocities
        + segment_broadcast(scale, batch_idx).unsqueeze(1) * forces
    )

    speed_up = downhill & (state.n > params.Nmin)
    dt = torch.where(
        speed_up,
        torch.minimum(state.dt * params.finc, torch.as_tensor(params.dtmax, dtype=state.dt.dtype)),
        state.dt,
    )
    a = torch.where(speed_up, state.a * params.fa, state.a)
    dt = torch.where(uphill, state.dt * params.fdec, dt)
    a = torch.where(uphill, torch.as_tensor(params.astart, dtype=a.dtype, device=a.device).expand_as(a), a)
    n = torch.where(downhill, state.n + 1, torch.zeros_like(state.n))

    velocities = velocities + segment_broadcast(dt, batch_idx).unsqueeze(1) * forces
    dr = segment_broadcast(dt, batch_idx).unsqueeze(1) * velocities
    dr_norm = segment_sum(xyz_sum(dr.square()), batch_idx, num).sqrt()
    shrink = torch.where(
        dr_norm > params.maxstep, params.maxstep / torch.where(dr_norm > 0, dr_norm, 1.0), 1.0
    )
    dr = dr * segment_broadcast(shrink, batch_idx).unsqueeze(1)
    return positions + dr, FireState(velocities, dt, a, n)
