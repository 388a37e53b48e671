"""Bussi–Donadio–Parrinello stochastic velocity rescaling, in the scheme of ``ase.md.bussi.Bussi``.

Before each velocity-Verlet step, every velocity of a system is multiplied by
α (Eq. A7 of the paper), with c = exp(−dt/τ_T), K the kinetic energy,
K̄ = ½ N_f kT the target, R₁ a standard normal and S a χ² variate with
N_f − 1 degrees of freedom (drawn as 2 × Γ((N_f − 1)/2))::

    s = (1 − c) K̄ / (K N_f)
    α = √(c + s (S + R₁²) + 2 R₁ √(c s))

and the energy the bath puts into the system is tracked, E_transferred +=
(α² − 1) K, so that E_total − E_transferred is conserved.

Reference: G. Bussi, D. Donadio and M. Parrinello, J. Chem. Phys. 126, 014101
(2007), doi:10.1063/1.2408420.
"""

from __future__ import annotations

import torch


def rescaling_factor(
    kinetic: torch.Tensor,
    kT: torch.Tensor,
    degrees_of_freedom: torch.Tensor,
    decay: torch.Tensor,
    normal: torch.Tensor,
    chi_square: torch.Tensor,
) -> torch.Tensor:
    """``[B]`` α from K (eV), kT (eV), N_f, c = exp(−dt/τ_T), R₁ and S, all ``[B]``.

    A system with no kinetic energy (or no degrees of freedom) keeps α = 1:
    there is nothing to rescale (ASE refuses to start such a system).
    """
    target = 0.5 * kT * degrees_of_freedom
    alive = (kinetic > 0) & (degrees_of_freedom > 0)
    safe_kinetic = torch.where(alive, kinetic, 1.0)
    safe_dof = torch.where(alive, degrees_of_freedom, 1.0)
    scaling = (1.0 - decay) * target / safe_kinetic / safe_dof
    alpha = torch.sqrt(
        decay + scaling * (chi_square + normal.square()) + 2.0 * normal * torch.sqrt(decay * scaling)
    )
    return torch.where(alive, alpha, 1.0)


def gamma_shape(degrees_of_freedom: torch.Tensor) -> torch.Tensor:
    """``[B]`` shape (N_f − 1)/2 of the Γ draw whose double is the χ² variate S."""
    return 0.5 * (degrees_of_freedom - 1.0)


def chi_square(gamma_draws: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
    """``[B]`` S = 2 Γ, exactly 0 where the shape is 0 (one degree of freedom, as numpy's Γ(0) = 0)."""
    return torch.where(shape > 0, 2.0 * gamma_draws, 0.0)


def transferred_energy(alpha: torch.Tensor, kinetic: torch.Tensor) -> torch.Tensor:
    """``[B]`` energy this rescaling added to the system, (α² − 1) K, eV (the bath lost as much)."""
    return (alpha.square() - 1.0) * kinetic
