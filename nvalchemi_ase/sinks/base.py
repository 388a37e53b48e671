"""``DataSink``: where snapshots of systems go (host memory, a device buffer, trajectory files).

A sink stores *system snapshots*: one write of a batch of B systems (or of the
systems a ``[B]`` mask selects) adds up to B snapshots, in batch order, after
the ones already stored. The rules shared by every sink live here, written once:

* ``mask`` is a ``[B]`` boolean tensor (or array); ``None`` selects every system,
  an all-False mask makes the write a no-op, a mask of another length raises
  ``ValueError`` naming both lengths.
* A write that does not fit raises :class:`SinkFullError` naming the capacity,
  the stored count and the incoming count, *before* anything is stored: a sink
  never keeps part of a write and never drops data silently.
* ``read()`` of an empty sink raises :class:`SinkEmptyError`; ``drain()`` is
  ``read()`` followed by ``zero()``.
"""

from __future__ import annotations

import abc
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.data import Batch


class SinkFullError(RuntimeError):
    """A write does not fit in the sink; raised before anything of it is stored."""


class SinkEmptyError(RuntimeError):
    """``read()`` or ``drain()`` of a sink that holds nothing."""


def check_capacity(capacity: Any, name: str = "capacity") -> int:
    """``capacity`` as a positive ``int``, else ``TypeError`` / ``ValueError`` naming it."""
    if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(capacity).__name__}")
    if capacity < 1:
        raise ValueError(f"{name} must be >= 1, got {capacity}")
    return int(capacity)


def selected_systems(batch: Batch, mask: torch.Tensor | np.ndarray | None) -> np.ndarray:
    """Host indices of the systems ``mask`` selects, in batch order.

    Parameters
    ----------
    batch
        The batch being written (B systems).
    mask
        ``[B]`` booleans, or ``None`` for every system. A device mask costs one
        device-to-host copy: the sink must know how many systems arrive.

    Returns
    -------
    numpy.ndarray
        ``[K]`` int64 indices, ``K <= B`` (empty for an all-False mask).
    """
    num_graphs = batch.num_graphs
    if mask is None:
        return np.arange(num_graphs, dtype=np.int64)
    if isinstance(mask, torch.Tensor):
        if mask.dtype != torch.bool:
            raise TypeError(f"mask must be a bool tensor, got dtype {mask.dtype}")
        host = mask.detach().cpu().numpy()
    else:
        host = np.asarray(mask)
        if host.dtype != bool:
            raise TypeError(f"mask must hold booleans, got dtype {host.dtype}")
    if host.ndim != 1 or host.shape[0] != num_graphs:
        raise ValueError(f"mask length {host.shape[0] if host.ndim else 0} != num_graphs {num_graphs}")
    return np.flatnonzero(host).astype(np.int64)


class DataSink(abc.ABC):
    """A store of system snapshots with a fixed capacity.

    Subclasses implement :meth:`_store`, :meth:`read`, :meth:`zero`,
    :meth:`__len__` and :attr:`capacity`; :meth:`write` selects the systems,
    checks the room and only then calls :meth:`_store`.
    """

    def write(self, batch: Batch, mask: torch.Tensor | np.ndarray | None = None) -> None:
        """Store a snapshot of the selected systems of ``batch``.

        Parameters
        ----------
        batch
            The systems to copy (any device; the sink makes its own copy).
        mask
            ``[B]`` bool selecting systems; ``None`` means all of them.

        Raises
        ------
        ValueError
            ``mask`` has the wrong length.
        SinkFullError
            The selected systems do not fit; nothing is stored.
        """
        systems = self._prepare(batch, mask)
        if systems.size:
            self._store(batch, systems)

    def _prepare(self, batch: Batch, mask: torch.Tensor | np.ndarray | None) -> np.ndarray:
        """The selected systems, after checking that they fit."""
        if not isinstance(batch, Batch):
            raise TypeError(f"batch must be a Batch, got {type(batch).__name__}")
        systems = selected_systems(batch, mask)
        capacity = self.capacity
        if systems.size and capacity is not None and len(self) + systems.size > capacity:
            raise SinkFullError(
                f"{type(self).__name__} is full: capacity {capacity}, {len(self)} stored, "
                f"cannot add {systems.size} more"
            )
        return systems

    @abc.abstractmethod
    def _store(self, batch: Batch, systems: np.ndarray) -> None:
        """Store ``batch``'s systems ``systems`` (host int64 indices, non-empty, known to fit)."""

    @abc.abstractmethod
    def read(self) -> Batch:
        """Every stored snapshot, in write order, as one batch.

        Raises
        ------
        SinkEmptyError
            Nothing is stored.
        """

    @abc.abstractmethod
    def zero(self) -> None:
        """Forget every stored snapshot."""

    @abc.abstractmethod
    def __len__(self) -> int:
        """Number of stored system snapshots."""

    @property
    @abc.abstractmethod
    def capacity(self) -> int | None:
        """Most snapshots the sink holds (``None``: no limit)."""

    @property
    def is_full(self) -> bool:
        """Whether no further snapshot fits."""
        capacity = self.capacity
        return capacity is not None and len(self) >= capacity

    def drain(self) -> Batch:
        """``read()`` then ``zero()``: every stored snapshot, leaving the sink empty."""
        snapshots = self.read()
        self.zero()
        return snapshots

    def _empty_error(self) -> SinkEmptyError:
        return SinkEmptyError(f"cannot read from an empty {type(self).__name__}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(stored={len(self)}, capacity={self.capacity})"
