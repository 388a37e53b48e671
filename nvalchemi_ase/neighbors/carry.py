"""Carrying neighbour-list rows into a re-formed batch (inflight refills keep the systems that stay)."""

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
    new_starts = np.cumsum(counts) - counts
    shift = np.repeat(new_starts - starts[keep], counts)  # new index - old index, per kept atom
    source = np.arange(int(counts.sum())) - shift
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
