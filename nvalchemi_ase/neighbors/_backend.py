"""Quiet import of ``nvalchemiops`` (NVIDIA's batched neighbour lists, on warp).

On a machine without a CUDA driver, warp's native library prints a warning to
the process's stdout when it initialises. That line is noise for our users (a
CPU run is a supported configuration), so we initialise warp once with the
file descriptors (and Python's streams) pointed at /dev/null when torch sees no
CUDA, and always without warp's start-up banner.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch


@contextlib.contextmanager
def _silenced_fds() -> Iterator[None]:
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        with (
            open(os.devnull, "w") as sink,
            contextlib.redirect_stdout(sink),
            contextlib.redirect_stderr(sink),
        ):
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


@functools.cache
def initialised_warp() -> Any:
    """The ``warp`` module, initialised once, quietly."""
    import warp

    warp.config.quiet = True  # type: ignore[attr-defined]  # no start-up banner in our output
    if torch.cuda.is_available():
        warp.init()
    else:
        try:
            with _silenced_fds():
                warp.init()
        except OSError:  # no usable file descriptors (embedded interpreters): accept the noise
            warp.init()
    return warp


@functools.cache
def ops_neighbor_list() -> Callable[..., Any]:
    """``nvalchemiops.torch.neighbors.neighbor_list``, imported once."""
    initialised_warp()
    from nvalchemiops.torch.neighbors import neighbor_list

    return neighbor_list


def cell_list_workspace(
    cell: torch.Tensor, pbc: torch.Tensor, cutoff: float, atoms: int
) -> dict[str, torch.Tensor]:
    """Grid sizes and buffers of ``nvalchemiops``' batched cell list, as keyword arguments.

    Passed to every build, they spare the library from sizing the grid again
    (which reads the cell on the host). Valid while the cell, ``pbc``, the
    cutoff and the number of atoms stay as they were.
    """
    initialised_warp()
    from nvalchemiops.torch.neighbors import estimate_batch_cell_list_sizes
    from nvalchemiops.torch.neighbors.neighbor_utils import allocate_cell_list

    total_cells, search_radius = estimate_batch_cell_list_sizes(cell, pbc, cutoff)
    names = (
        "cells_per_dimension",
        "neighbor_search_radius",
        "atom_periodic_shifts",
        "atom_to_cell_mapping",
        "atoms_per_cell_count",
        "cell_atom_start_indices",
        "cell_atom_list",
    )
    buffers = allocate_cell_list(atoms, total_cells, search_radius, cell.device)
    return dict(zip(names, buffers, strict=True))
