"""``HostMemory``: system snapshots kept as CPU copies."""

from __future__ import annotations

import numpy as np
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.sinks.base import DataSink, check_capacity

_CPU = torch.device("cpu")


class HostMemory(DataSink):
    """Snapshots copied to host memory, one CPU batch per write.

    Every field is kept (custom fields too) with its dtype, and so is the
    per-system metadata, so ``read().to_atoms()`` gives back full ``ase.Atoms``.
    Writes cost one device-to-host copy of the selected systems.

    Parameters
    ----------
    capacity
        Most system snapshots held (an int >= 1).

    Notes
    -----
    ``read()`` joins the stored writes with :meth:`Batch.cat`, which keeps an
    optional field (``forces``, ``energy``, ``stress``, custom fields) only when
    every write carried it. All writes must share one float dtype (checked at
    write time, so ``read()`` cannot fail later).
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = check_capacity(capacity)
        self._chunks: list[Batch] = []
        self._size = 0

    @property
    def capacity(self) -> int:
        """Most system snapshots held."""
        return self._capacity

    def __len__(self) -> int:
        return self._size

    def _store(self, batch: Batch, systems: np.ndarray) -> None:
        if self._chunks and batch.dtype != self._chunks[0].dtype:
            raise ValueError(
                f"HostMemory holds {self._chunks[0].dtype} snapshots; cannot add a {batch.dtype} batch"
            )
        chunk = batch.index_select(systems)  # new tensors: later changes to batch do not reach it
        if chunk.device != _CPU:
            chunk = chunk.to(_CPU)
        self._chunks.append(chunk)
        self._size += int(systems.size)

    def read(self) -> Batch:
        """Every stored snapshot, in write order, as one CPU batch."""
        if not self._chunks:
            raise self._empty_error()
        return Batch.cat(self._chunks)

    def zero(self) -> None:
        """Forget every stored snapshot."""
        self._chunks = []
        self._size = 0
