"""Device constraints as pure moves: held components (``FixAtoms``, ``FixCartesian``) and ``FixCom``.

Each function takes ``held [N, 3]`` bool (or None) and ``fixcom [B]`` bool
(or None) and applies ASE's rule for it, branch-free (no sync).
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum, segment_weighted_mean


def _per_system(values: torch.Tensor, systems: torch.Tensor) -> torch.Tensor:
    """``[B, 3]`` values kept for ``systems`` (``[B]`` bool), zero elsewhere."""
    return torch.where(systems.unsqueeze(1), values, torch.zeros_like(values))


def positions(
    old: torch.Tensor,
    new: torch.Tensor,
    masses: torch.Tensor,
    batch_idx: torch.Tensor,
    held: torch.Tensor | None,
    fixcom: torch.Tensor | None,
) -> torch.Tensor:
    """``new`` with held components at ``old``; ``fixcom`` systems' centre of mass at ``old``'s."""
    if held is not None:
        new = torch.where(held, old, new)
    if fixcom is not None:
        count = fixcom.shape[0]
        shift = segment_weighted_mean(old, masses, batch_idx, count) - segment_weighted_mean(
            new, masses, batch_idx, count
        )
        new = new + segment_broadcast(_per_system(shift, fixcom), batch_idx)
    return new


def forces(
    forces: torch.Tensor,
    masses: torch.Tensor,
    batch_idx: torch.Tensor,
    held: torch.Tensor | None,
    fixcom: torch.Tensor | None,
) -> torch.Tensor:
    """Held components zeroed; ``fixcom``: F_i −= m_i λ, λ = Σ m F / Σ m² (ASE's ``FixCom.adjust_forces``)."""
    if held is not None:
        forces = torch.where(held, torch.zeros_like(forces), forces)
    if fixcom is not None:
        count = fixcom.shape[0]
        lam = segment_sum(masses.unsqueeze(1) * forces, batch_idx, count)
        lam = lam / segment_sum(masses.square(), batch_idx, count).unsqueeze(1)
        forces = forces - masses.unsqueeze(1) * segment_broadcast(_per_system(lam, fixcom), batch_idx)
    return forces


def velocities(
    velocities: torch.Tensor,
    masses: torch.Tensor,
    batch_idx: torch.Tensor,
    held: torch.Tensor | None,
    fixcom: torch.Tensor | None,
) -> torch.Tensor:
    """Held components at rest; ``fixcom`` systems without centre-of-mass motion."""
    if held is not None:
        velocities = torch.where(held, torch.zeros_like(velocities), velocities)
    if fixcom is not None:
        drift = segment_weighted_mean(velocities, masses, batch_idx, fixcom.shape[0])
        velocities = velocities - segment_broadcast(_per_system(drift, fixcom), batch_idx)
    return velocities
