"""Search cells for the cell list: every system gets a non-degenerate box.

The cell list bins atoms in each system's cell, so the cell must span 3D even
for molecules (no cell) and slabs or wires whose non-periodic vectors are zero.
Periodic vectors are kept; each non-periodic axis gets a direction orthogonal
to the periodic ones (and to the other open axis), long enough to hold the atoms, and the atoms are moved
along those directions only so they start inside the box. Pairs never cross a
non-periodic axis, so the integer shifts found this way are the shifts in the
system's own cell, and the pair vectors are computed from the true positions.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops import segment_broadcast, segment_max, segment_min


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
    directions = open_directions(cell, pbc)
    along = torch.einsum("nd,nkd->nk", positions, segment_broadcast(directions, batch_idx))
    low = segment_min(along, batch_idx, num_systems)
    high = segment_max(along, batch_idx, num_systems)
    open_axes = (~pbc).to(cell.dtype)
    lengths = high - low + padding
    search_cell = torch.where(pbc.unsqueeze(-1), cell, directions * lengths.unsqueeze(-1))
    start = low - 0.5 * padding
    offsets = torch.einsum("bk,bkd->bd", start * open_axes, directions)
    return positions - segment_broadcast(offsets, batch_idx), search_cell


def open_directions(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` unit directions, row k for axis k, orthogonal to every periodic vector.

    Rows of periodic axes are filled too but unused. Built from cross products
    and ``where`` only (no linear-algebra call that would wait for the device):

    * two periodic axes: the normal of their plane;
    * one periodic axis u: two unit vectors completing an orthonormal frame with u;
    * none: the Cartesian axes.
    """
    dtype, device = cell.dtype, cell.device
    eye = torch.eye(3, dtype=dtype, device=device).expand_as(cell)
    periodic_count = pbc.sum(dim=1)
    # Two periodic axes: row k is the normal to the other two vectors.
    normals = torch.stack(
        [torch.linalg.cross(cell[:, (k + 1) % 3], cell[:, (k + 2) % 3]) for k in range(3)], dim=1
    )
    normals = _unit(normals)
    # One periodic axis: an orthonormal pair completing its direction.
    axis = _unit((cell * pbc.unsqueeze(-1).to(dtype)).sum(dim=1))  # the single periodic vector
    helper = eye[:, 0] * 0.0 + torch.nn.functional.one_hot(axis.abs().argmin(dim=1), 3).to(dtype)
    first = _unit(torch.linalg.cross(axis, helper))
    second = torch.linalg.cross(axis, first)
    open_rank = torch.cumsum((~pbc).long(), dim=1) - 1  # 0 for the first open axis, 1 for the second
    pair = torch.where((open_rank == 0).unsqueeze(-1), first.unsqueeze(1), second.unsqueeze(1))
    directions = torch.where((periodic_count == 2).view(-1, 1, 1), normals, eye)
    return torch.where((periodic_count == 1).view(-1, 1, 1), pair, directions)


def _unit(vectors: torch.Tensor) -> torch.Tensor:
    return vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(vectors.dtype).tiny)
