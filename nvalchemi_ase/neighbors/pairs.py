"""``Neighbors``: the candidate pairs of one neighbour-list update, as a padded matrix and its views."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import numpy as np
import torch

from nvalchemi_ase.ops import segment_broadcast

if TYPE_CHECKING:
    from nvalchemi_ase.neighbors.half import HalfList


class Neighbors:
    """Candidate pairs of a batch, padded to ``K`` per atom (a neighbour matrix).

    Row ``a`` lists atom ``a``'s neighbours in its first ``counts[a]`` slots.
    The derived views pad the rest with index ``a`` itself and a zero shift, so
    every index is valid and no shape depends on the data; the flat views
    ``i``, ``j``, ``pair_shifts`` give the same pairs as an edge list of length
    ``E = N·K``, and :meth:`compact` gives the real pairs only. The views are
    made on first use: a fused kernel reads the raw buffers instead. An object
    describes the list as of one update; use it before the next.

    Attributes
    ----------
    raw_matrix, raw_shifts, raw_counts
        The list's own int32 buffers ``[N, K]``, ``[N, K, 3]``, ``[N]``
        (slots past ``counts`` hold stale values).
    cell, batch_idx
        ``[B, 3, 3]`` and ``[N]`` of the batch at this update.
    cutoff
        Å, the radius the pairs were searched to (a model's cutoff plus the skin).
    overflow
        ``[B]`` bool, systems with an atom that had more neighbours than ``K``
        (their pair set is incomplete).
    complete
        True when the host has checked that no system overflowed (the CPU
        path): models may then skip masking their results with ``overflow``.
    reused
        True when the list hands this same object out again for as long as its
        pairs hold (the host-checked path): values derived from it once, such
        as :attr:`image_vectors`, then serve many steps.
    earlier_half
        The previous update's :attr:`half` and the host indices of the systems
        rebuilt since: :attr:`half` then rewrites that one's rows of those systems.
    """

    def __init__(
        self,
        raw_matrix: torch.Tensor,
        raw_shifts: torch.Tensor,
        raw_counts: torch.Tensor,
        cell: torch.Tensor,
        batch_idx: torch.Tensor,
        cutoff: float,
        overflow: torch.Tensor,
        complete: bool = False,
        reused: bool = False,
        earlier_half: tuple[HalfList, np.ndarray] | None = None,
    ) -> None:
        self.raw_matrix, self.raw_shifts, self.raw_counts = raw_matrix, raw_shifts, raw_counts
        self.cell, self.batch_idx = cell, batch_idx
        self.cutoff = cutoff
        self.overflow = overflow
        self.complete = complete
        self.reused = reused
        self._earlier_half = earlier_half

    @functools.cached_property
    def image_vectors(self) -> torch.Tensor:
        """``[N, K, 3]`` float64 ``shifts @ cell`` of the listed slots, Å (made once: a warp kernel).

        For fused kernels: slots past ``counts`` are left unset, unlike
        :attr:`shift_vectors`, and the cell is the one of this update.
        """
        from nvalchemi_ase.neighbors.images import image_vectors  # loads warp on first use

        return image_vectors(self.raw_shifts, self.raw_counts, self.cell, self.batch_idx)

    @functools.cached_property
    def half(self) -> HalfList:
        """Each pair once (``j < i``) with its image vector, for kernels with Newton's third law (made once).

        See :mod:`nvalchemi_ase.neighbors.half`; worth it for a list that serves many steps (``reused``).
        After a rebuild of some systems (``earlier_half``: the last update's half and the host indices
        of the systems rebuilt since), that half is rewritten for their rows only, where it can be.
        """
        from nvalchemi_ase.neighbors.half import half_list, updated_half  # loads warp on first use

        arrays = (self.raw_matrix, self.raw_shifts, self.raw_counts, self.cell, self.batch_idx)
        earlier, self._earlier_half = self._earlier_half, None
        if earlier is not None:
            updated = updated_half(earlier[0], *arrays, earlier[1])
            if updated is not None:
                return updated
        return half_list(*arrays)

    @functools.cached_property
    def counts(self) -> torch.Tensor:
        """``[N]`` long, real pairs per row."""
        return self.raw_counts.long().clamp(max=self.raw_matrix.shape[1])

    @functools.cached_property
    def mask(self) -> torch.Tensor:
        """``[N, K]`` bool, real pairs."""
        capacity = self.raw_matrix.shape[1]
        return torch.arange(capacity, device=self.raw_matrix.device).unsqueeze(0) < self.counts.unsqueeze(1)

    @functools.cached_property
    def matrix(self) -> torch.Tensor:
        """``[N, K]`` long neighbour indices (padding: the atom itself)."""
        own = torch.arange(self.raw_matrix.shape[0], device=self.raw_matrix.device).unsqueeze(1)
        return torch.where(self.mask, self.raw_matrix.long(), own)

    @functools.cached_property
    def shifts(self) -> torch.Tensor:
        """``[N, K, 3]`` long integer cell shifts (``ijS`` convention; padding: zero)."""
        return self.raw_shifts.long() * self.mask.unsqueeze(2)

    @functools.cached_property
    def shift_vectors(self) -> torch.Tensor:
        """``[N, K, 3]`` float ``shifts @ cell`` of each pair's system, Å."""
        return torch.bmm(self.shifts.to(self.cell.dtype), segment_broadcast(self.cell, self.batch_idx))

    @property
    def i(self) -> torch.Tensor:
        """``[E]`` the centre atom of each pair slot."""
        n, k = self.raw_matrix.shape
        return torch.arange(n, device=self.raw_matrix.device).repeat_interleave(k)

    @property
    def j(self) -> torch.Tensor:
        """``[E]`` the neighbour atom of each pair slot."""
        return self.matrix.reshape(-1)

    @property
    def pair_shifts(self) -> torch.Tensor:
        """``[E, 3]`` the integer shift of each pair slot."""
        return self.shifts.reshape(-1, 3)

    def vectors(self, positions: torch.Tensor) -> torch.Tensor:
        """Pair vectors ``[N, K, 3]`` from each atom to the image of its neighbour, Å."""
        vectors = positions[self.matrix]  # a fresh tensor: the in-place steps below touch nothing shared
        return vectors.sub_(positions.unsqueeze(1)).add_(self.shift_vectors)

    def compact(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(i, j, S)`` of the real pairs only (syncs with the host to size them)."""
        keep = self.mask.reshape(-1).nonzero().squeeze(1)
        return self.i[keep], self.j[keep], self.pair_shifts[keep]
