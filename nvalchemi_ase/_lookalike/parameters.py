"""The look-alikes' parameters as the engines take them: a float, ``[B]`` per system, or ``[N]`` per atom.

ASE's classes take a scalar, an array that broadcasts against the atoms, or
(for a list of systems here) one value or array per system. :func:`engine_value`
turns any of those into what the engines' ``PerSystemParameter`` descriptors
accept, once, with ASE's errors; the engines validate the values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PerSystem", "engine_value", "per_atom_values"]


class PerSystem(list):
    """One entry per system (a scalar or that system's per-atom array); ``*`` and ``/`` act per entry."""

    def __mul__(self, other: Any) -> PerSystem:
        return PerSystem(np.multiply(entry, other) for entry in self)

    __rmul__ = __mul__

    def __truediv__(self, other: Any) -> PerSystem:
        return PerSystem(np.divide(entry, other) for entry in self)


def per_atom_values(values: Any, name: str, count: int) -> float | np.ndarray:
    """A float when all equal, else one value per atom ``[count]``, from what ASE's ``updatevars`` accepts.

    ASE broadcasts the value against ``masses`` ``(N, 1)`` and then the
    ``(N, 3)`` moves: an ``(N, 1)`` array is one value per atom; an ``(N,)``
    one fails there (ValueError here); one that varies along the last axis
    (``(N, 3)``, ``(3,)``) is per direction (NotImplementedError here).
    """
    array = np.asarray(values, dtype=float)
    if array.ndim == 0:
        return float(array)
    try:
        full = np.broadcast_to(array, (count, 3))
    except ValueError:
        raise ValueError(
            f"{name}: an array of shape {array.shape} does not broadcast against the masses "
            f"({count}, 1) and moves ({count}, 3) (ASE fails with it); give a scalar or one "
            f"value per atom of shape ({count}, 1)"
        ) from None
    if np.all(full == full.flat[0]):
        return float(full.flat[0])
    if np.any(full != full[:, :1]):
        raise NotImplementedError(
            f"{name}: values that differ per direction (shape {array.shape}) are not supported; "
            f"give one value per atom, shape ({count}, 1)"
        )
    return full[:, 0].copy()


def engine_value(
    values: Any, name: str, counts: Sequence[int], *, per_atom: bool = False
) -> float | torch.Tensor:
    """A float when all values agree, else ``[B]`` one per system, else (``per_atom``) ``[N]`` one per atom.

    ``counts`` holds the atoms per system. Without ``per_atom``, values that
    differ within a system raise NotImplementedError naming ``name``.
    """
    counts = [int(count) for count in counts]
    if isinstance(values, PerSystem):
        if not per_atom:
            raise NotImplementedError(f"{name}: per-atom values are not supported; give one value per system")
        parts = [
            per_atom_values(v, f"{name}[{b}]", n) for b, (v, n) in enumerate(zip(values, counts, strict=True))
        ]
        if all(isinstance(part, float) for part in parts):
            return engine_value(np.asarray(parts), name, counts)
        return torch.as_tensor(
            np.concatenate([np.broadcast_to(p, n) for p, n in zip(parts, counts, strict=True)])
        )
    array = np.asarray(values, dtype=float)
    per_system = array.shape == (len(counts),)  # one per system (one Atoms: a one-element array)
    if (array.ndim == 0 or per_system or not per_atom) and np.all(array == array.flat[0]):
        return float(array.flat[0])
    if per_system:
        return torch.as_tensor(array)
    if not per_atom:
        raise NotImplementedError(
            f"{name}: per-atom values are not supported; give one value, or one per system for a list"
        )
    part = per_atom_values(array, name, sum(counts))
    return part if isinstance(part, float) else torch.as_tensor(part)
