"""An atom's overflow of the neighbour list's room, reported to the host without a sync per step.

On CUDA the list does not wait for the device to learn whether every atom's
neighbours fitted: the flag is copied to pinned host memory without waiting,
and read at a later update (or by :meth:`OverflowFlag.settle`, for callers that
wait for the device anyway). A CPU list checks on the host at once and grows.
"""

from __future__ import annotations

import torch


class NeighborCapacityError(RuntimeError):
    """An atom had more neighbours than the list had room for (CUDA runs; CPU runs grow the list)."""


class OverflowFlag:
    """A ``[1]`` bool overflow flag on its way to the host (at most one at a time)."""

    def __init__(self) -> None:
        self._pending: tuple[torch.Tensor, torch.cuda.Event | None] | None = None
        self._host: torch.Tensor | None = None

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def clear(self) -> None:
        self._pending = None

    def defer(self, flag: torch.Tensor) -> None:
        """Copy ``flag`` to the host without waiting; it is read later."""
        if not flag.is_cuda:
            self._pending = (flag, None)
            return
        if self._host is None:
            self._host = torch.zeros(1, dtype=torch.bool, pin_memory=True)
        self._host.copy_(flag, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending = (self._host, event)

    def settle(self) -> bool:
        """Wait for the flag: True if it says an atom overflowed. Clears it."""
        pending, self._pending = self._pending, None
        return pending is not None and bool(pending[0])

    def landed(self) -> bool:
        """True if the flag has reached the host and says an atom overflowed (then clears it);
        False when nothing overflowed or the copy has not landed yet (look again later)."""
        if self._pending is None:
            return False
        flag, event = self._pending
        if event is not None and not event.query():
            return False
        self._pending = None
        return bool(flag)
