"""Langevin BAOAB at fixed cell, in the scheme of ``ase.md.langevinbaoab.LangevinBAOAB`` (NVT).

With γ = 1/τ_T, c = e^(−γ dt) and ξ a standard normal per component::

    B: v ← v + ½ dt F/m
    A: r ← r + ½ dt v
    O: v ← c v + √(kT) √(1 − c²) ξ / √m
    A: r ← r + ½ dt v
       F ← F(r)
    B: v ← v + ½ dt F/m

ASE writes the O noise prefactor as (σ/√(2γ)) √(1 − e^(−2γ dt)) with
σ = √(2γ kT); it is computed the same way here.

Reference: B. Leimkuhler and C. Matthews, J. Chem. Phys. 138, 174102 (2013),
doi:10.1063/1.4802990.
"""

from __future__ import annotations

import torch


def ornstein_uhlenbeck_coefficients(
    dt: float, kT: torch.Tensor, gamma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(decay, prefactor)``: e^(−γ dt) and the O noise width × √m.

    Both are shaped like kT (eV) and γ (1/internal time); dt is in internal time.
    """
    sigma = torch.sqrt(2.0 * gamma * kT)
    prefactor = (sigma / torch.sqrt(2.0 * gamma)) * torch.sqrt(1.0 - torch.exp(-2.0 * gamma * dt))
    return torch.exp(-gamma * dt), prefactor


def ornstein_uhlenbeck(
    velocities: torch.Tensor,
    sqrt_masses: torch.Tensor,
    decay: torch.Tensor,
    prefactor: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """O: ``c v + prefactor ξ / √m``.

    Velocities and noise are ``[N, 3]``; ``sqrt_masses`` (√m), decay c and
    prefactor are ``[N, 1]``.
    """
    return velocities * decay + prefactor * (noise / sqrt_masses)
