"""Batched neighbour lists in matscipy's ``ijS`` convention, with a Verlet skin.

The pair vector of pair ``e`` is
``positions[j[e]] - positions[i[e]] + shifts[e] @ cell[system of i[e]]``.
No pair crosses systems and no atom is its own neighbour without a shift.
Pairs are found by ``nvalchemiops``' batched O(N) cell list on the batch's
device, except for small systems on a CPU, searched directly
(:mod:`~nvalchemi_ase.neighbors.small_cells`); this module hides the library
and keeps the skin bookkeeping.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors.carry import carried_rows
from nvalchemi_ase.neighbors.geometry import search_geometry
from nvalchemi_ase.neighbors.overflow import NeighborCapacityError, OverflowFlag
from nvalchemi_ase.neighbors.pairs import Neighbors
from nvalchemi_ase.neighbors.rows import RowFinder
from nvalchemi_ase.neighbors.skin import moved_beyond_skin, skin_kernel
from nvalchemi_ase.ops import segment_broadcast, segment_max, xyz_sum

if TYPE_CHECKING:
    from nvalchemi_ase.neighbors.half import HalfList

_CAPACITY_MARGIN = 1.2
"""Room left per atom above the largest neighbour count seen, for density fluctuations."""
_CAPACITY_SLACK = 16
_FIRST_GUESS = 128
_JOIN_FRACTION = 0.5
"""On a host-checked update that rebuilds some systems, those that have used this share of their skin join.

At most 1: the systems that must rebuild (past their whole skin) are then among them."""


class NeighborList:
    """A reusable batched neighbour list with a Verlet skin.

    ``update(batch)`` returns the pairs within ``cutoff + skin``. Between calls
    it rebuilds only the systems in which an atom moved more than ``skin / 2``
    (or whose cell changed); the others keep their pairs. When the host checks
    (``sync_check``), systems that have used half of that margin are rebuilt
    in the same call, which groups the calls. A change of batch structure
    (atom counts, pbc, device, dtype) rebuilds everything, except for the
    systems announced with :meth:`carry` (an inflight refill keeps them).

    Parameters
    ----------
    cutoff
        Å, the interaction cutoff the pairs must cover.
    skin
        Å, extra search radius that lets a list be reused while atoms move.
    max_neighbors
        Room per atom. ``None`` sizes it from the first build and grows it when
        an atom outgrows it.
    sync_check
        Whether every update checks the room on the host (one device→host
        sync) and grows the list at once. ``None`` means on CPU (where the check
        costs nothing) but not on CUDA: there an overflow marks the affected
        systems in ``Neighbors.overflow`` at once and raises
        :class:`NeighborCapacityError` at the next update.
    """

    def __init__(
        self,
        cutoff: float,
        skin: float = 0.0,
        max_neighbors: int | None = None,
        sync_check: bool | None = None,
    ) -> None:
        if not cutoff > 0.0:
            raise ValueError(f"cutoff must be positive, got {cutoff}")
        if not skin >= 0.0:
            raise ValueError(f"skin must be non-negative, got {skin}")
        if max_neighbors is not None and max_neighbors < 1:
            raise ValueError(f"max_neighbors must be at least 1, got {max_neighbors}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.user_max_neighbors = max_neighbors
        self.sync_check = sync_check
        self.rebuilds = 0
        """Number of system rebuilds so far (counted only when ``sync_check`` is on)."""
        self._key: tuple | None = None
        self._current: Neighbors | None = None
        self._overflow = OverflowFlag()
        self._rows = RowFinder()
        self._cell_seen: tuple[torch.Tensor | None, int] = (None, -1)
        """The cell tensor (and its version) last found equal to the one of the last build."""
        self._carry: tuple[np.ndarray, np.ndarray] | None = None
        """``(keep, old counts)`` announced by :meth:`carry`, used by the next update."""
        self._check_room = False
        """Whether the next update checks the room on the host (new systems came in: :meth:`carry`)."""
        self._flag: torch.Tensor | None = None
        self._moved_flag = torch.zeros(1, dtype=torch.int32)  # the CPU skin kernel's answer
        self._flag_host: np.ndarray = np.zeros(1, dtype=np.int32)
        self._probed: tuple[torch.Tensor, int, torch.Tensor] | None = None
        self._counts_seen: tuple[torch.Tensor, tuple] | None = None
        """``(ptr, key)``: the batch (by its ``ptr``) last found to have the atom counts of ``key``."""
        """``(positions, their version, reference)`` last tested by an integrator (:meth:`skin_probe`)."""

    @property
    def search_radius(self) -> float:
        return self.cutoff + self.skin

    def reset(self) -> None:
        """Forget the last build: the next update rebuilds every system."""
        self._key = None
        self._overflow.clear()
        self._carry = None

    def carry(self, keep: np.ndarray | list[int] | None = None) -> None:
        """Announce new systems in the next batch; ``keep``: it starts with the last one's systems ``keep``.

        An inflight refill drops finished systems and appends new ones. The
        next :meth:`update` then keeps the pairs of the systems that stay
        (moved to their new rows) and builds only the new systems and the
        kept ones that moved past the skin, instead of the whole batch. When
        the next batch does not start with those systems (other atom counts,
        device or dtype), the update builds everything as usual. With
        ``keep=None`` the next batch has the same layout, some systems
        replaced in place (the skin test finds them moved: only they rebuild).
        Either way the next update checks the room on the host once (a new
        system may have more neighbours than any before).

        Parameters
        ----------
        keep
            System indices into the batch of the last update (host ints), or None.
        """
        self._check_room = True
        if self._key is None or keep is None:
            return
        self._carry = (np.asarray(keep, dtype=np.int64).reshape(-1), self._key[0])

    def needs_rebuild(self, batch: Batch) -> torch.Tensor:
        """``[B]`` bool: systems whose list is stale (all of them after a structure change)."""
        if not self._same_structure(batch):
            return torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.device)
        return self._moved(batch)

    def _any_moved(self, batch: Batch) -> bool:
        """Host-checked path: whether any atom moved past ``skin / 2`` or any cell changed.

        The per-step question of a CPU run, asked with as few operations as it
        takes: a cell that is the tensor of the last build, unwritten since,
        is not compared again.
        """
        cell: torch.Tensor = batch.cell
        seen, version = self._cell_seen
        if seen is not cell or cell._version != version:
            if not torch.equal(cell, self._cell):
                return True
            self._cell_seen = (cell, cell._version)
        positions: torch.Tensor = batch.positions
        probed = self._probed
        if (
            probed is not None
            and probed[0] is positions
            and probed[1] == positions._version
            and probed[2] is self._positions
        ):
            return bool(self._flag_host[0])  # the integrator's kernel tested these very positions
        if positions.device.type == "cpu":
            kernel = skin_kernel()
            if kernel.fits(positions, self._positions):  # one pass, on our threads (see the module)
                return kernel.any_moved_past(positions, self._positions, 0.5 * self.skin, self._moved_flag)
        displacement_sq = xyz_sum((positions - self._positions).square())
        return bool((displacement_sq > (0.5 * self.skin) ** 2).any())

    def skin_probe(self, positions: torch.Tensor) -> tuple[torch.Tensor, float, torch.Tensor] | None:
        """For an integrator that moves the atoms in a kernel: what it needs to test the skin on the way.

        ``(reference positions [N, 3], skin / 2, flag)``: the kernel sets
        ``flag[0]`` (int32, cleared here) to 1 when an atom lands farther than
        ``skin / 2`` from its reference; then :meth:`probed` names the positions
        it wrote. The next update reads the flag instead of testing again, if
        the batch still holds those positions, unwritten, and the list was not
        rebuilt since. Offered only where the host decides whether to rebuild
        (a CPU list with ``sync_check`` not False) and a list of ``positions``'
        shape exists; else None.
        """
        key = self._key
        if self._current is None or key is None or key[1].type != "cpu" or self.sync_check is False:
            return None
        if self._positions.shape != positions.shape or positions.device.type != "cpu":
            return None
        if self._flag is None:
            self._flag = torch.zeros(1, dtype=torch.int32)
            self._flag_host = self._flag.numpy()
        self._flag_host[0] = 0
        self._probed = None
        return self._positions, 0.5 * self.skin, self._flag

    def probed(self, positions: torch.Tensor, reference: torch.Tensor) -> None:
        """``positions``, tested against ``reference`` (from :meth:`skin_probe`), are the batch's next."""
        self._probed = (positions, positions._version, reference)

    def _moved(self, batch: Batch) -> torch.Tensor:
        return moved_beyond_skin(
            batch.positions, self._positions, batch.cell, self._cell, batch.batch_idx, self.skin
        )

    def update(self, batch: Batch) -> Neighbors:
        """Pairs within ``cutoff + skin`` for the batch as it is now."""
        current = self._current
        same = current is not None and self._same_structure(batch)
        host_checked = same and self._sync(batch)
        moved = host_checked and self._any_moved(batch)  # asked once: a kernel over every atom
        if current is not None and host_checked and not moved and not self._overflow.pending:
            return current  # the common step of a CPU run: nothing moved past skin/2
        with torch.no_grad():
            self._raise_pending_overflow()
            earlier: Neighbors | None = None  # the last update's, when only some systems are rebuilt
            flags = None
            if not same and not self._same_structure(batch):
                if not self._carried_build(batch):
                    self._first_build(batch)
                self._current = None
            else:
                if current is not None and host_checked:
                    if not moved:
                        return current  # nothing moved past skin/2: the last pairs still hold
                    # those that must rebuild are among those due soon (a lower threshold)
                    flags = self._due_soon(batch)
                    earlier = current
                else:
                    flags = self._moved(batch)
                self._build(batch, flags)
            overflow = self._check_capacity(batch)
            self._current = self._neighbors(batch, overflow, self._earlier_half(earlier, flags))
            return self._current

    # ------------------------------------------------------------------ internals
    def _same_structure(self, batch: Batch) -> bool:
        """Whether ``batch`` has the atom counts, device, dtype and ``pbc`` of the last full build.

        Called every step, so it reads ``pbc`` (a device tensor) only when it is
        another tensor than last time or was written in place: a device sync
        once per change, never per step.
        """
        key = self._key
        if key is None:
            return False
        counts, device, dtype, pbc, version, pbc_values = key
        if device != batch.device or dtype != batch.dtype:
            return False
        # a batch's atom counts are fixed when it is made (with its ptr): compared once per batch and key
        seen = self._counts_seen
        if seen is None or seen[0] is not batch.ptr or seen[1] is not key:
            if not np.array_equal(counts, batch.counts):
                return False
            self._counts_seen = (batch.ptr, key)
        if batch.pbc is pbc and batch.pbc._version == version:
            return True
        if batch.pbc.cpu().numpy().tobytes() != pbc_values:
            return False
        self._key = self._structure_key(batch)  # same values in a new tensor: remember that one
        return True

    @staticmethod
    def _structure_key(batch: Batch) -> tuple:
        pbc = batch.pbc
        return (batch.counts, batch.device, batch.dtype, pbc, pbc._version, pbc.cpu().numpy().tobytes())

    def _due_soon(self, batch: Batch) -> torch.Tensor:
        """``[B]`` systems past ``_JOIN_FRACTION`` of their skin: they rebuild with the ones that must.

        A rebuild call has a fixed cost (the cell list's grid of the whole batch), and
        at a finite temperature the systems cross their skin at scattered
        steps: grouping them roughly halves the calls. Only where the host
        decides whether to call at all (CPU); on CUDA every step calls anyway.
        """
        skin = self.skin * _JOIN_FRACTION
        return moved_beyond_skin(
            batch.positions, self._positions, batch.cell, self._cell, batch.batch_idx, skin
        )

    def _sync(self, batch: Batch) -> bool:
        return self.sync_check if self.sync_check is not None else batch.device.type == "cpu"

    def _allocate(self, batch: Batch, capacity: int) -> None:
        n = batch.num_nodes
        device = batch.device
        self._capacity = capacity
        self._matrix = torch.full((n, capacity), n, dtype=torch.int32, device=device)
        self._shifts = torch.zeros((n, capacity, 3), dtype=torch.int32, device=device)
        self._counts = torch.zeros(n, dtype=torch.int32, device=device)
        self._positions = batch.positions.detach().clone()
        self._cell = batch.cell.detach().clone()
        self._batch_idx32 = batch.batch_idx.to(torch.int32)
        self._ptr32 = batch.ptr.to(torch.int32)
        self._rows.forget()

    def _first_build(self, batch: Batch) -> None:
        """Build everything; size the room from what was found (setup: syncs once)."""
        capacity = self.user_max_neighbors or _FIRST_GUESS
        self._all_periodic = bool(batch.pbc.all())  # fixed with the structure: checked once here
        while True:
            self._allocate(batch, capacity)
            self._build(batch, torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.device))
            largest = int(self._counts.max())
            if largest <= capacity:
                break
            capacity = self._grown(largest)
        if self.user_max_neighbors is None:
            self._shrink_to(self._grown(largest))
        self._key = self._structure_key(batch)

    def _carried_build(self, batch: Batch) -> bool:
        """Keep the rows of the systems announced by :meth:`carry`; build the rest. False: not applicable."""
        carry, self._carry = self._carry, None
        key = self._key
        if carry is None or key is None:
            return False
        keep, old_counts = carry
        kept = keep.size
        counts = batch.counts
        if (
            key[1] != batch.device
            or key[2] != batch.dtype
            or kept > counts.size
            or (keep.size and (keep.min() < 0 or keep.max() >= old_counts.size))
            or not np.array_equal(counts[:kept], old_counts[keep])
        ):
            return False
        rows = {"matrix": self._matrix, "shifts": self._shifts, "counts": self._counts}
        moved = carried_rows(old_counts, keep, {**rows, "positions": self._positions}, batch.num_nodes)
        self._matrix, self._shifts, self._counts = moved["matrix"], moved["shifts"], moved["counts"]
        self._positions = moved["positions"]
        cell = batch.cell.detach().clone()
        cell[:kept] = self._cell.index_select(0, torch.as_tensor(keep, device=batch.device))
        self._cell = cell
        self._batch_idx32 = batch.batch_idx.to(torch.int32)
        self._ptr32 = batch.ptr.to(torch.int32)
        self._rows.forget()
        self._all_periodic = bool(batch.pbc.all())  # fixed with the structure: checked once here
        self._key = self._structure_key(batch)
        new = torch.arange(batch.num_graphs, device=batch.device) >= kept
        flags = new | self._moved(batch)  # kept systems that moved past the skin rebuild too
        if kept < batch.num_graphs or not self._sync(batch) or bool(flags.any()):
            self._build(batch, flags)
        return True

    @staticmethod
    def _grown(largest: int) -> int:
        return int(largest * _CAPACITY_MARGIN) + _CAPACITY_SLACK

    def _shrink_to(self, capacity: int) -> None:
        if capacity < self._capacity:
            self._matrix = self._matrix[:, :capacity].contiguous()
            self._shifts = self._shifts[:, :capacity].contiguous()
            self._capacity = capacity

    def _build(self, batch: Batch, flags: torch.Tensor) -> None:
        if self._all_periodic:  # every cell spans 3D already: the cell list takes them as they are
            positions, cell = batch.positions.detach(), batch.cell
        else:
            positions, cell = search_geometry(
                batch.positions.detach(),
                batch.cell,
                batch.pbc,
                batch.batch_idx,
                padding=self.search_radius,
            )
        self._rows.find(
            batch,
            positions,
            cell,
            flags,
            self.search_radius,
            (self._ptr32, self._batch_idx32),
            (self._matrix, self._shifts, self._counts),
        )
        positions = batch.positions.detach()
        if positions.device.type == "cpu" and skin_kernel().fits(positions, self._positions):
            self._positions = skin_kernel().rebased(positions, self._positions, batch.batch_idx, flags)
        else:
            atom_flags = segment_broadcast(flags, batch.batch_idx).unsqueeze(1)
            self._positions = torch.where(atom_flags, positions, self._positions)
        self._cell = torch.where(flags.view(-1, 1, 1), batch.cell, self._cell)
        self._cell_seen = (None, -1)  # compare the cell at the next update
        if self._sync(batch):
            self.rebuilds += int(flags.sum())

    def _check_capacity(self, batch: Batch) -> torch.Tensor:
        """``[B]`` bool: systems with an atom whose neighbours did not fit (grown first on the host)."""
        if self._sync(batch) or self._check_room:  # a refill waits for the host anyway: no extra sync
            self._check_room = False
            largest = int(self._counts.max())
            if largest <= self._capacity:  # the usual answer, without a pass over the atoms
                return torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
            self._allocate(batch, self._grown(largest))
            self._build(batch, torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.device))
            atom_overflow = self._counts > self._capacity
        else:
            atom_overflow = self._counts > self._capacity
            self._overflow.defer(atom_overflow.any().view(1))
        return segment_max(atom_overflow, batch.batch_idx, batch.num_graphs)

    def settle(self) -> bool:
        """Check the room now (waits for the device): True if the last update overflowed.

        For callers that copy results to the host anyway (``BatchedCalculator``):
        after an overflow the list forgets its build, so the next update rebuilds
        it sized to what it finds; recompute then. Engines never call this per step.
        """
        if not self._overflow.settle():
            return False
        self._key = None  # the next update builds afresh, sized to what it finds
        return True

    def _raise_pending_overflow(self) -> None:
        if self._overflow.landed():
            self._key = None
            raise NeighborCapacityError(
                f"an atom had more than {self._capacity} neighbours within {self.search_radius} Å; "
                "the last results of the systems flagged in Neighbors.overflow are incomplete. "
                "Pass a larger max_neighbors (or sync_check=True to grow it automatically)."
            )

    def _earlier_half(
        self, earlier: Neighbors | None, flags: torch.Tensor | None
    ) -> tuple[HalfList, np.ndarray] | None:
        """The last update's half list, if it made one and the buffers it came from are still the
        list's (not reallocated), with the host indices of the rebuilt systems (a CPU list)."""
        if earlier is None or flags is None or earlier.raw_matrix is not self._matrix:
            return None
        half = earlier.__dict__.get("half")  # made only if a kernel asked for it
        return None if half is None else (half, np.flatnonzero(flags.cpu().numpy()))

    def _neighbors(
        self, batch: Batch, overflow: torch.Tensor, earlier_half: tuple[HalfList, np.ndarray] | None = None
    ) -> Neighbors:
        return Neighbors(
            raw_matrix=self._matrix,
            raw_shifts=self._shifts,
            raw_counts=self._counts,
            cell=batch.cell,
            batch_idx=batch.batch_idx,
            cutoff=self.search_radius,
            overflow=overflow,
            complete=self._sync(batch),  # the host grew the room until every atom fitted
            reused=self._sync(batch),  # update() returns it again while nothing moved past skin/2
            earlier_half=earlier_half,
        )
