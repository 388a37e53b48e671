"""Kernel outputs that come back step after step: a few tensors reused while nobody else holds them.

Engines never write into a tensor the batch (or anyone) still holds: each
step's positions, velocities and forces are new tensors, so a user, a hook or
an interrupted step's saved fields keep the values of their moment. Allocating
those tensors, and making warp's view of each for the next launch, cost more
than a small system's arithmetic. A :class:`Buffers` keeps a few outputs per
shape and hands one out again only when no one else refers to it: not the
batch, not a view of it, not a numpy array over its memory, not a DLPack
export. So in a run the same two or three tensors take turns, their warp views
are made once and found by identity (:func:`view`), and a recorded launch finds
the same arguments again; a result someone kept is never written over.
"""

from __future__ import annotations

import sys
import weakref
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.ops.warp_launch import descriptor

_VIEWS: dict[tuple[int, Any], tuple[weakref.ref, int, Any]] = {}
"""``(id(tensor), warp dtype) -> (weak reference, address, view)`` (see :func:`view`)."""
_VIEWS_SIZE = 1024

_OWN_REFERENCES = 3
"""``sys.getrefcount`` of a pooled tensor nobody else holds: the pool's list, the loop's name, the call."""


class Buffers:
    """Up to ``count`` reusable output tensors per shape, dtype and device.

    Parameters
    ----------
    count
        Tensors kept per shape. When all are held elsewhere, :meth:`take`
        makes a new one and lets the oldest go (its holder keeps it).
    """

    def __init__(self, count: int = 4) -> None:
        self.count = count
        self._rings: dict[tuple, list[torch.Tensor]] = {}

    def take(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A contiguous tensor that no one else holds (contents undefined)."""
        key = (shape, dtype, device)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = []
        for tensor in ring:
            if sys.getrefcount(tensor) == _OWN_REFERENCES and _unshared(tensor):
                return tensor
        tensor = torch.empty(shape, dtype=dtype, device=device)
        ring.append(tensor)
        if len(ring) > self.count:
            ring.pop(0)
        return tensor

    def like(self, tensor: torch.Tensor) -> torch.Tensor:
        """:meth:`take` with ``tensor``'s shape, dtype and device."""
        return self.take(tensor.shape, tensor.dtype, tensor.device)

    def clear(self) -> None:
        """Let every kept tensor go."""
        self._rings.clear()


def _storage_uses(tensor: torch.Tensor) -> int:
    return int(torch._C._storage_Use_Count(tensor.untyped_storage()._cdata))


_OWN_STORAGE_USES = _storage_uses(torch.empty(1))
"""A lone tensor's memory's holders as :func:`_storage_uses` counts them (its tensor, the call)."""


def _unshared(tensor: torch.Tensor) -> bool:
    """No C++ holder (a DLPack export) and no other tensor (a view) or numpy array on its memory."""
    uses: int = tensor._use_count()  # type: ignore[attr-defined]  # torch's C++ reference count
    return uses == 1 and _storage_uses(tensor) == _OWN_STORAGE_USES


def view(tensor: torch.Tensor, dtype: Any = None) -> Any:
    """Warp's view of ``tensor`` (see :func:`~nvalchemi_ase.ops.warp_launch.descriptor`), found by the
    tensor's identity: the tensors a step passes to its kernels are the same objects step after step
    (the pools' outputs, the masses, the neighbour list's buffers), and looking one up by identity
    costs a fraction of building the address-and-layout key. An entry holds a weak reference and
    the address it was made for (an in-place ``set_`` moves it; shapes are the callers' to keep)."""
    key = (id(tensor), dtype)
    found = _VIEWS.get(key)
    if found is not None and found[0]() is tensor and found[1] == tensor.data_ptr():
        return found[2]
    made = descriptor(tensor, dtype)
    if len(_VIEWS) >= _VIEWS_SIZE:
        _VIEWS.clear()
    _VIEWS[key] = (weakref.ref(tensor), tensor.data_ptr(), made)
    return made


def index_list(indices: np.ndarray, room: int) -> torch.Tensor:
    """``indices`` as the first entries of a pooled int32 CPU tensor of ``room`` entries (at least
    ``indices.size``): the row list of a kernel that rewrites chosen rows. The same few tensors
    serve call after call, so their warp views and the recorded launches are found again (a new
    tensor each call costs a re-recorded launch)."""
    listed = _INDEX_LISTS.take((max(indices.size, room),), torch.int32, torch.device("cpu"))
    listed.numpy()[: indices.size] = indices
    return listed


_INDEX_LISTS = Buffers(count=2)
