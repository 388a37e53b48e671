"""``WrapPeriodicHook``: wrap atoms back into their cell along the periodic axes.

With the cell's rows as lattice vectors (ASE's convention), an atom's
fractional coordinates are ``s = r · inv(cell)``. Along each periodic axis ``k``
the atom is moved by the lattice translation that brings ``s_k`` into
``[0, 1)``::

    r' = r - Σ_{k periodic} floor(s_k) · cell_k

which equals ``(s mod 1) · cell`` on periodic axes and keeps ``s`` on the
others, as ``ase.Atoms.wrap()`` does. A cell row that is zero (the vacuum axis
of a slab, the free axes of a wire) stands for a direction orthogonal to the
other rows, as ASE's ``complete_cell`` makes it. Systems without periodic axes
are left exactly as they are.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import torch

from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops import segment_broadcast

if TYPE_CHECKING:
    from nvalchemi_ase.hooks.protocol import HookContext


def fractional_basis(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Per system, the matrix ``D`` with fractional coordinates ``s = r @ D``.

    ``D = inv(cell)`` for cells spanning 3D. Zero rows are treated as unit
    vectors orthogonal to the other rows (``D = cellᵀ (cell cellᵀ + Z)⁻¹``,
    ``Z`` marking the zero rows), and systems without periodic axes get the
    identity, so no singular matrix is ever inverted. Branch-free and without
    a host sync (``inv_ex`` does not check for errors).

    Parameters
    ----------
    cell
        ``[B, 3, 3]`` lattice vectors as rows, Å.
    pbc
        ``[B, 3]`` bool.

    Returns
    -------
    torch.Tensor
        ``[B, 3, 3]``, 1/Å.
    """
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
    cell = torch.where(pbc.any(dim=1).view(-1, 1, 1), cell, eye)
    zero_rows = (cell == 0).all(dim=2)  # [B, 3]
    direct, _ = torch.linalg.inv_ex(cell)  # better conditioned than the Gram form; used where it exists
    gram = cell @ cell.transpose(1, 2) + torch.diag_embed(zero_rows.to(cell.dtype))
    gram_inverse, _ = torch.linalg.inv_ex(gram)
    through_gram = cell.transpose(1, 2) @ gram_inverse
    return torch.where(zero_rows.any(dim=1).view(-1, 1, 1), through_gram, direct)


def wrap_positions(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, batch_idx: torch.Tensor
) -> torch.Tensor:
    """Positions moved into their cell along periodic axes (see the module docstring).

    Parameters
    ----------
    positions
        ``[N, 3]`` Å.
    cell
        ``[B, 3, 3]`` lattice vectors as rows, Å.
    pbc
        ``[B, 3]`` bool.
    batch_idx
        ``[N]`` system of each atom.

    Returns
    -------
    torch.Tensor
        ``[N, 3]`` Å; fractional coordinates in ``[0, 1)`` along periodic axes
        (to round-off), unchanged along the others.
    """
    basis = segment_broadcast(fractional_basis(cell, pbc), batch_idx)  # [N, 3, 3]
    fractional = torch.bmm(positions.unsqueeze(1), basis).squeeze(1)
    images = torch.floor(fractional)
    images = images + (fractional - images >= 1.0).to(images.dtype)  # s = -1e-18 rounds to 1: keep it
    images = torch.where(segment_broadcast(pbc, batch_idx), images, torch.zeros_like(images))
    return positions - torch.bmm(images.unsqueeze(1), segment_broadcast(cell, batch_idx)).squeeze(1)


class WrapPeriodicHook:
    """Wrap positions into the cell along periodic axes (triclinic cells, slabs, wires).

    Only ``positions`` change, by lattice translations; velocities, forces and
    energies are unaffected. Neighbour lists rebuild the systems whose atoms
    were wrapped (the skin test sees the jump).

    Parameters
    ----------
    frequency
        Fires when ``step_count % frequency == 0``.
    stage
        Where it fires; default ``DynamicsStage.AFTER_POST_UPDATE``, after the step has moved the atoms.

    Raises
    ------
    ValueError
        ``frequency`` is not an integer ``>= 1``.
    """

    def __init__(self, frequency: int = 1, stage: enum.Enum = DynamicsStage.AFTER_POST_UPDATE) -> None:
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"WrapPeriodicHook: frequency must be an integer >= 1, got {frequency!r}")
        self.frequency = frequency
        self.stage: enum.Enum = stage

    def __call__(self, ctx: HookContext, stage: enum.Enum) -> None:
        """Wrap ``ctx.batch.positions`` in place of the field (no host sync)."""
        batch = ctx.batch
        batch.positions = wrap_positions(batch.positions, batch.cell, batch.pbc, batch.batch_idx)

    def __repr__(self) -> str:
        return f"WrapPeriodicHook(frequency={self.frequency}, stage={self.stage!r})"
