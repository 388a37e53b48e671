"""``neighbor_list(batch, cutoff)``: every pair within a cutoff, once, as matscipy's ``(i, j, S)``."""

from __future__ import annotations

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors.neighbor_list import NeighborList
from nvalchemi_ase.ops import xyz_sum


def neighbor_list(batch: Batch, cutoff: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """All pairs within ``cutoff`` as ``(i, j, S)`` (matscipy's ``ijS`` convention).

    Parameters
    ----------
    batch
        The systems; pairs never cross systems.
    cutoff
        Å.

    Returns
    -------
    i, j
        ``[E]`` long atom indices into the batch.
    S
        ``[E, 3]`` long integer cell shifts: the pair vector is
        ``positions[j] - positions[i] + S @ cell[batch_idx[i]]``.
    """
    neighbors = NeighborList(cutoff, skin=0.0, sync_check=True).update(batch)
    i, j, shifts = neighbors.compact()
    vectors = neighbors.vectors(batch.positions)[neighbors.mask]
    inside = xyz_sum(vectors.square()) < cutoff**2
    return i[inside], j[inside], shifts[inside]
