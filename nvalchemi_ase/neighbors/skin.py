"""The Verlet-skin test: which systems need their neighbour list rebuilt."""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.ops import segment_max, xyz_sum


def moved_beyond_skin(
    positions: torch.Tensor,
    reference_positions: torch.Tensor,
    cell: torch.Tensor,
    reference_cell: torch.Tensor,
    batch_idx: torch.Tensor,
    skin: float,
) -> torch.Tensor:
    """Per system, whether an atom moved more than ``skin / 2`` or the cell changed since the last build.

    A list built out to ``cutoff + skin`` still holds every pair within
    ``cutoff`` while no atom has moved more than ``skin / 2``. The displacement
    is the plain one (not the minimum image), so an atom wrapped back into the
    cell counts as moved and its shifts are rebuilt.

    Parameters
    ----------
    positions, reference_positions
        ``[N, 3]`` now and at the last build, Å.
    cell, reference_cell
        ``[B, 3, 3]`` now and at the last build.
    batch_idx
        ``[N]`` system of each atom.
    skin
        Å.

    Returns
    -------
    torch.Tensor
        ``[B]`` bool, on the device of ``positions`` (no host sync).
    """
    if positions.device.type == "cpu" and skin_kernel().fits(positions, reference_positions):
        # one pass on our threads, not five torch operations on its OpenMP threads (see the module)
        moved = skin_kernel().systems_moved_past(
            positions, reference_positions, batch_idx, cell.shape[0], 0.5 * skin
        )
    else:
        displacement_sq = xyz_sum((positions - reference_positions).square())
        moved = segment_max(displacement_sq, batch_idx, cell.shape[0]) > (0.5 * skin) ** 2
    return moved | (cell != reference_cell).flatten(1).any(dim=1)


@functools.cache
def skin_kernel() -> Any:
    """:mod:`nvalchemi_ase.ops.skin_kernel`, imported on first use (it loads warp)."""
    from nvalchemi_ase.ops import skin_kernel

    return skin_kernel
