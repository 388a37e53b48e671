"""Cell math per system: volumes, kinetic and ideal-gas stress, positions that follow a changed cell.

Cells are ``[B, 3, 3]`` with the lattice vectors as rows (ASE's convention);
stresses ``[B, 3, 3]`` in eV/Å³ with ASE's sign (positive in tension).
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum


def volume(cell: torch.Tensor) -> torch.Tensor:
    """``[B]`` the absolute determinant of the cell, Å³."""
    return torch.linalg.det(cell).abs()


def kinetic_tensor(
    velocities: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, num_systems: int
) -> torch.Tensor:
    """``[B, 3, 3]`` Σ m v vᵀ per system (twice the kinetic energy tensor), eV."""
    outer = (masses.unsqueeze(1) * velocities).unsqueeze(2) * velocities.unsqueeze(1)
    return segment_sum(outer, batch_idx, num_systems)


def stress_with_ideal_gas(stress: torch.Tensor, kinetic: torch.Tensor, volume: torch.Tensor) -> torch.Tensor:
    """ASE's ``get_stress(include_ideal_gas=True)``: σ − Σ m v vᵀ / V, ``[B, 3, 3]``."""
    return stress - kinetic / volume.view(-1, 1, 1)


def scale_positions(
    positions: torch.Tensor, cell: torch.Tensor, new_cell: torch.Tensor, batch_idx: torch.Tensor
) -> torch.Tensor:
    """Positions ``[N, 3]`` carried with their cell (ASE's ``set_cell(new_cell, scale_atoms=True)``).

    The same fractional coordinates in ``new_cell``: r ← r · h⁻¹ h'.
    """
    transform = torch.linalg.solve(cell, new_cell)
    return torch.einsum("nj,njk->nk", positions, segment_broadcast(transform, batch_idx))
