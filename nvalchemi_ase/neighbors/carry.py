"""Rows of chosen systems: carried into a re-formed batch (inflight refills keep the systems that
stay), or listed for a kernel that rewrites only theirs."""

from __future__ import annotations

import numpy as np
import torch


def carried_rows(
    old_counts: np.ndarray, keep: np.ndarray, rows: dict[str, torch.Tensor], atoms: int
) -> dict[str, torch.Tensor]:
    """Per-atom rows of the old batch's systems ``keep``, moved to the front of a batch of ``atoms`` atoms.

    A refill forms the new batch from the old one's systems ``keep``, in that
    order, followed by new systems. The kept systems' rows move to the rows
    of their atoms in the new batch, and the atom indices inside the
    neighbour matrix move with them (a pair never leaves its system, so each
    row shifts by its own system's offset). The rows after the kept atoms are
    left uninitialised: the new systems are built into them.

    Parameters
    ----------
    old_counts
        Atoms per system of the old batch (host).
    keep
        Old system indices that lead the new batch, in their new order (host).
    rows
        Per-atom tensors ``[N_old, ...]`` to move; the one named ``matrix`` holds
        atom indices (int32) and is shifted as well.
    atoms
        Atoms in the new batch.

    Returns
    -------
    dict
        The moved tensors, same keys, ``atoms`` rows each.
    """
    starts = np.cumsum(old_counts) - old_counts
    counts = old_counts[keep]
    source = row_ranges(starts[keep], starts[keep] + counts)
    shift = np.arange(source.size) - source  # new index - old index, per kept atom
    device = next(iter(rows.values())).device
    source_t = torch.as_tensor(source, dtype=torch.long, device=device)
    moved: dict[str, torch.Tensor] = {}
    for name, value in rows.items():
        fresh = torch.empty((atoms, *value.shape[1:]), dtype=value.dtype, device=device)
        picked = value.index_select(0, source_t)
        if name == "matrix":
            picked += torch.as_tensor(shift, dtype=value.dtype, device=device).unsqueeze(1)
        fresh[: source.size] = picked
        moved[name] = fresh
    return moved


def row_ranges(first: np.ndarray, end: np.ndarray) -> np.ndarray:
    """int64 concatenation of ``arange(first[k], end[k])`` over ``k``: the rows of chosen systems
    (host arrays, no Python loop)."""
    lengths = (np.asarray(end) - np.asarray(first)).astype(np.int64)
    before = np.cumsum(lengths) - lengths  # where each range starts in the result
    return np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(np.asarray(first) - before, lengths)
