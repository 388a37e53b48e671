"""Batched neighbour lists: matscipy's ``ijS`` convention, O(N) cell lists on device, Verlet skin."""

from __future__ import annotations

from nvalchemi_ase.neighbors.neighbor_list import (
    NeighborCapacityError,
    NeighborList,
    Neighbors,
    neighbor_list,
)
from nvalchemi_ase.neighbors.skin import moved_beyond_skin

__all__ = [
    "NeighborCapacityError",
    "NeighborList",
    "Neighbors",
    "moved_beyond_skin",
    "neighbor_list",
]
