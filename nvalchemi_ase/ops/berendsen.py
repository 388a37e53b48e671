"""Berendsen's weak-coupling velocity rescaling, in the scheme of ``ase.md.nvtberendsen.NVTBerendsen``.

Each step starts by rescaling every velocity of a system by

    λ = √(1 + (T₀/T − 1) dt/τ_T),   clamped to [0.9, 1.1]

(T the system's kinetic temperature), then takes a velocity-Verlet step in
which, with ``fixcm``, the unweighted mean momentum is subtracted after the
first half kick (``p_i ← p_i − Σp/n``, so the total momentum is zero).

Reference: H. J. C. Berendsen, J. P. M. Postma, W. F. van Gunsteren, A. DiNola
and J. R. Haak, J. Chem. Phys. 81, 3684 (1984), doi:10.1063/1.448118.
"""

from __future__ import annotations

import math

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum

SMALLEST_SCALE = 0.9
"""ASE's lower clamp on the velocity scale factor."""

LARGEST_SCALE = 1.1
"""ASE's upper clamp on the velocity scale factor."""


def velocity_scale(
    temperature: torch.Tensor, target: torch.Tensor, dt: float, taut: torch.Tensor
) -> torch.Tensor:
    """``[B]`` λ from the kinetic temperature ``[B]`` (K), the target ``[B]`` (K), dt and τ_T ``[B]``.

    A system at 0 K gets the largest factor, as in ASE (its velocities stay zero).
    """
    ratio = torch.where(temperature > 0, target / temperature, math.inf)
    scale = torch.sqrt(1.0 + (ratio - 1.0) * (dt / taut))
    return scale.clamp(min=SMALLEST_SCALE, max=LARGEST_SCALE)


def remove_mean_momentum(
    velocities: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, counts: torch.Tensor
) -> torch.Tensor:
    """ASE's ``fixcm``: ``p_i ← p_i − Σp/n`` per system (``counts[B]`` atoms, float), as velocities."""
    momenta = velocities * masses.unsqueeze(1)
    mean = segment_sum(momenta, batch_idx, counts.shape[0]) / counts.unsqueeze(1)
    return (momenta - segment_broadcast(mean, batch_idx)) / masses.unsqueeze(1)


# ---------------------------------------------------------------------- pressure coupling (NPT)
# ``ase.md.nptberendsen``: after the velocity scaling, every step scales the
# cell (and the atoms with it) towards the target pressure P₀, from the stress
# σ with the ideal-gas term (ASE's sign), compressibility β and time τ_P:
#   isotropic:  h ← μ h,  μ = 1 − (dt/τ_P) β/3 (P₀ − P),  P = −tr σ / 3
#   per axis:   h_i ← μ_i h_i,  μ_i = 1 − dt β/(3 τ_P) (P₀ + σ_ii) pbc_i mask_i  (angles kept)


def cell_scale(
    stress: torch.Tensor, pressure: torch.Tensor, dt: float, taup: torch.Tensor, compressibility: torch.Tensor
) -> torch.Tensor:
    """``[B]`` μ of the isotropic coupling (``stress`` ``[B, 3, 3]``, the rest ``[B]``)."""
    current = -stress.diagonal(dim1=-2, dim2=-1).sum(-1) / 3
    return 1.0 - (dt / taup) * compressibility / 3.0 * (pressure - current)


def axis_scales(
    stress: torch.Tensor,
    pressure: torch.Tensor,
    dt: float,
    taup: torch.Tensor,
    compressibility: torch.Tensor,
    coupled: torch.Tensor,
) -> torch.Tensor:
    """``[B, 3]`` μ_i of the per-axis coupling; ``coupled`` ``[B, 3]`` is pbc × mask (0 or 1)."""
    rate = (dt * compressibility / taup / 3.0).unsqueeze(1)
    return 1.0 - rate * (pressure.unsqueeze(1) - (-stress.diagonal(dim1=-2, dim2=-1))) * coupled
