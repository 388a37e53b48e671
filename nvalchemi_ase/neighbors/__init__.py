"""Batched neighbour lists: matscipy's ``ijS`` convention, O(N) cell lists on device, Verlet skin."""

from __future__ import annotations

from nvalchemi_ase.neighbors.all_pairs import neighbor_list
from nvalchemi_ase.neighbors.neighbor_list import NeighborList
from nvalchemi_ase.neighbors.overflow import NeighborCapacityError
from nvalchemi_ase.neighbors.pairs import Neighbors
from nvalchemi_ase.neighbors.skin import moved_beyond_skin

__all__ = [
    "NeighborCapacityError",
    "NeighborList",
    "Neighbors",
    "moved_beyond_skin",
    "neighbor_list",
]
