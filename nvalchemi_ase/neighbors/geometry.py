"""Search cells for the cell list: every system gets a non-degenerate box.

The cell list bins atoms in each system's cell, so the cell must span 3D even
for molecules (no cell) and slabs or wires whose non-periodic vectors are zero.
Periodic vectors are kept; each non-periodic axis gets a direction orthogonal
to the periodic ones, long enough to hold the atoms, and the atoms are moved
along those directions only so they start inside the box. Pairs never cross a
non-periodic axis, so the integer shifts found this way are the shifts in the
system's own cell, and the pair vectors are computed from the true positions.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops import segment_max, segment_min


def search_geometry(
    positions: torch.Tensor,
    cell: torch.Tensor,
    pbc: torch.Tensor,
    batch_idx: torch.Tensor,
    padding: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and cells to give the cell list.

    Parameters
    ----------
    positions
        ``[N, 3]`` Å.
    cell
        ``[B, 3, 3]``, rows are lattice vectors.
    pbc
        ``[B, 3]`` bool.
    batch_idx
        ``[N]`` system of each atom.
    padding
        Å added to the extent of the atoms along each non-periodic direction.

    Returns
    -------
    positions
        ``[N, 3]``, moved along non-periodic directions only.
    cell
        ``[B, 3, 3]``, non-degenerate.
    """
    num_systems = cell.shape[0]
    periodic_rows = cell * pbc.unsqueeze(-1).to(cell.dtype)
    # Right singular vectors beyond the rank span the directions orthogonal to every periodic vector.
    _, _, vh = torch.linalg.svd(periodic_rows)
    rank = pbc.sum(dim=1, keepdim=True)
    slot = (rank + torch.cumsum(~pbc, dim=1) - 1).clamp(max=2)
    directions = torch.gather(vh, 1, slot.unsqueeze(-1).expand(-1, -1, 3))
    along = torch.einsum("nd,nkd->nk", positions, directions[batch_idx])
    low = segment_min(along, batch_idx, num_systems)
    high = segment_max(along, batch_idx, num_systems)
    open_axes = (~pbc).to(cell.dtype)
    lengths = high - low + padding
    search_cell = torch.where(pbc.unsqueeze(-1), cell, directions * lengths.unsqueeze(-1))
    start = low - 0.5 * padding
    offsets = torch.einsum("bk,bkd->bd", start * open_axes, directions)
    return positions - offsets[batch_idx], search_cell
