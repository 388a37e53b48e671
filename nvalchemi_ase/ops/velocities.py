"""Initial velocities: Maxwell–Boltzmann draws with the centre-of-mass drift removed per system."""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_weighted_mean


def maxwell_boltzmann(masses: torch.Tensor, kT: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """Velocities ``√(kT/m) ξ``: masses ``[N]`` amu, kT ``[N]`` eV, noise ``[N, 3]`` standard normal."""
    return torch.sqrt(kT / masses).unsqueeze(1) * noise


def remove_drift(
    velocities: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, num_systems: int
) -> torch.Tensor:
    """Subtract each system's centre-of-mass velocity (its total momentum becomes zero)."""
    return velocities - segment_broadcast(
        segment_weighted_mean(velocities, masses, batch_idx, num_systems), batch_idx
    )
