"""Who finds a neighbour list's rows: the direct search of small cells on a CPU, the cell list otherwise.

:class:`~nvalchemi_ase.neighbors.NeighborList` decides which systems to
rebuild and keeps the skin bookkeeping; a :class:`RowFinder` writes those
systems' rows (neighbours, shifts, counts) into the list's buffers, keeping
what each builder can reuse between calls while the search cell is unchanged.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors._backend import cell_list_workspace, ops_batch_cell_list
from nvalchemi_ase.neighbors.small_cells import SearchCells, build_direct, search_cells


class RowFinder:
    """Writes the rows of the flagged systems; remembers, per search cell, which builder each takes."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Drop what was kept for the last cell (the list's buffers or layout changed)."""
        self._workspace_key: tuple | None = None
        self._workspace: dict[str, torch.Tensor] = {}
        self._cells_key: tuple | None = None
        self._cells: SearchCells | None = None

    def find(
        self,
        batch: Batch,
        positions: torch.Tensor,
        cell: torch.Tensor,
        flags: torch.Tensor,
        radius: float,
        layout: tuple[torch.Tensor, torch.Tensor],
        rows: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    ) -> None:
        """The rows of the systems ``flags`` (``[B]`` bool) within ``radius``.

        ``positions`` and ``cell`` are the search geometry, ``layout`` the
        batch's int32 ``(ptr, batch_idx)``, ``rows`` the list's
        ``(matrix, shifts, counts)``, written in place for those systems only.
        On a CPU the small systems are searched directly (the choice is made on
        the host: no sync) and the cell list runs only when others are left.
        """
        ptr32, batch_idx32 = layout
        matrix, shifts, counts = rows
        by_cell_list = flags
        if batch.device.type == "cpu":
            flagged = flags.numpy()
            cells = self._search_cells(cell, batch, radius)
            direct = flagged & cells.direct
            build_direct(direct, positions, cells, *layout, radius, *rows)
            by_cell_list = torch.from_numpy(flagged & ~direct) if direct.any() else flags
            if not bool(by_cell_list.any()):
                return
        ops_batch_cell_list()(
            positions,
            radius,
            cell=cell,
            pbc=batch.pbc,
            batch_idx=batch_idx32,
            batch_ptr=ptr32,
            neighbor_matrix=matrix,
            neighbor_matrix_shifts=shifts,
            num_neighbors=counts,
            rebuild_flags=by_cell_list,
            **self._cell_list_workspace(cell, batch.pbc, radius, matrix.shape[0]),
        )

    def _search_cells(self, cell: torch.Tensor, batch: Batch, radius: float) -> SearchCells:
        """The direct search's numbers of every system (which it takes, their cells' normals, reach
        and plane spacings), kept while the search cell is the same tensor, unmodified."""
        key = (cell, cell._version, batch.ptr, batch.pbc, batch.pbc._version, radius)
        if self._cells is None or not _same(key, self._cells_key):
            self._cells = search_cells(cell, batch.pbc, batch.counts, radius)
            self._cells_key = key
        return self._cells

    def _cell_list_workspace(
        self, cell: torch.Tensor, pbc: torch.Tensor, radius: float, atoms: int
    ) -> dict[str, torch.Tensor]:
        """The cell list's grid and buffers, sized once per cell.

        Sizing the grid reads the cell on the host (a device sync on CUDA, and
        a millisecond on a CPU), so it is kept while the search cell is the
        same tensor, unmodified (``_version`` counts in-place writes): a
        fixed-cell run sizes it once. A new or modified cell sizes it afresh.
        """
        key = (cell, cell._version, radius, atoms)
        if not _same(key, self._workspace_key):
            self._workspace = cell_list_workspace(cell, pbc, radius, atoms)
            self._workspace_key = key
        return self._workspace


def _same(key: tuple, kept: tuple | None) -> bool:
    """Whether ``key`` is ``kept``: the same tensors (by identity, never by value: no read), equal numbers."""
    if kept is None:
        return False
    return all(a is b if isinstance(a, torch.Tensor) else a == b for a, b in zip(key, kept, strict=True))
