"""Langevin dynamics in the scheme of ``ase.md.langevin.Langevin``.

Vanden-Eijnden and Ciccotti's second-order integrator (Eq. 23 of the paper),
with per-atom kT and friction γ and σ = √(2 kT γ / m)::

    c1 = dt/2 − dt² γ/8          c2 = γ dt/2 − γ² dt²/8
    c3 = √dt σ/2 − dt^1.5 γ σ/8   c5 = dt^1.5 σ/(2√3)       c4 = γ c5/2

    rnd_v = c3 ξ − c4 η,  rnd_r = c5 η        (ξ, η ~ N(0, 1), drawn once per step)
    v ← v + c1 F/m − c2 v + rnd_v
    r ← r + dt v + rnd_r
    F ← F(r)
    v ← v + c1 F/m − c2 v + rnd_v

Reference: E. Vanden-Eijnden and G. Ciccotti, Chem. Phys. Lett. 429, 310
(2006), doi:10.1016/j.cplett.2006.07.086.
"""

from __future__ import annotations

import math

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum


def coefficients(
    dt: float, kT: torch.Tensor, gamma: torch.Tensor, masses: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``c1..c5`` per atom ``[N, 1]`` from dt (internal time), kT (eV) and γ (1/internal time) per atom."""
    sigma = torch.sqrt(2.0 * kT * gamma / masses).unsqueeze(1)
    gamma = gamma.unsqueeze(1)
    c1 = dt / 2.0 - dt * dt * gamma / 8.0
    c2 = dt * gamma / 2.0 - dt * dt * gamma * gamma / 8.0
    c3 = math.sqrt(dt) * sigma / 2.0 - dt**1.5 * gamma * sigma / 8.0
    c5 = dt**1.5 * sigma / (2.0 * math.sqrt(3.0))
    c4 = gamma / 2.0 * c5
    return c1, c2, c3, c4, c5


def random_moves(
    xi: torch.Tensor,
    eta: torch.Tensor,
    c3: torch.Tensor,
    c4: torch.Tensor,
    c5: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rnd_vel, rnd_pos)`` from the step's two standard-normal draws ``[N, 3]``."""
    return c3 * xi - c4 * eta, c5 * eta


def remove_noise_drift(
    rnd_vel: torch.Tensor,
    rnd_pos: torch.Tensor,
    masses: torch.Tensor,
    batch_idx: torch.Tensor,
    counts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """ASE's ``fixcm``: noise with zero centre-of-mass motion per system, rescaled by √(n/(n−1)).

    ``counts`` is ``[B]`` atoms per system (float). A one-atom system gets no noise.
    """
    num = counts.shape[0]
    n = segment_broadcast(counts, batch_idx).unsqueeze(1)
    factor = torch.sqrt(n / (n - 1.0).clamp(min=1.0)) * (n > 1.0)
    mean_pos = segment_broadcast(segment_sum(rnd_pos, batch_idx, num), batch_idx) / n
    momentum = segment_broadcast(segment_sum(rnd_vel * masses.unsqueeze(1), batch_idx, num), batch_idx)
    rnd_pos = (rnd_pos - mean_pos) * factor
    rnd_vel = (rnd_vel - momentum / (masses.unsqueeze(1) * n)) * factor
    return rnd_vel, rnd_pos


def velocity_half(
    velocities: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    c1: torch.Tensor,
    c2: torch.Tensor,
    rnd_vel: torch.Tensor,
) -> torch.Tensor:
    """``v + c1 F/m − c2 v + rnd_vel``."""
    return velocities + (c1 * forces / masses.unsqueeze(1) - c2 * velocities + rnd_vel)


def position_step(
    positions: torch.Tensor, velocities: torch.Tensor, dt: float, rnd_pos: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """New positions ``r + dt v + rnd_pos`` and the velocities re-derived from the displacement (as ASE)."""
    moved = positions + dt * velocities + rnd_pos
    return moved, (moved - positions - rnd_pos) / dt
