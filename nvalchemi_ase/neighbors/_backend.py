"""Quiet import of ``nvalchemiops`` (NVIDIA's batched neighbour lists, on warp).

On a machine without a CUDA driver, warp's native library prints a warning to
the process's stdout when it initialises. That line is noise for our users (a
CPU run is a supported configuration), so we initialise warp once with the
file descriptors (and Python's streams) pointed at /dev/null when torch sees no
CUDA, and always without warp's start-up banner.

Start-up cost is kept to what a run uses (``benchmarks/bench_startup.py``
measures it): only the batched cell list's modules are imported, not the
``__init__`` of the packages around them (which define every neighbour
method, optimizer, interaction kernel and spline of the library: about 50
torch custom ops and 0.5 s of warp code generation we never launch; any other
use of those packages still gets them complete, see :func:`_lazy_package`),
and the library's torch custom ops are called without importing
``torch._dynamo`` (see :func:`_without_dynamo_import`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterator
from types import ModuleType
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
    # nor a line per kernel module loaded (what importing nvalchemiops would set anyway)
    warp.config.log_level = max(warp.config.log_level, warp.LOG_WARNING)
    if torch.cuda.is_available():
        warp.init()
    else:
        try:
            with _silenced_fds():
                warp.init()
        except OSError:  # no usable file descriptors (embedded interpreters): accept the noise
            warp.init()
    return warp


def _lazy_package(name: str, provides: dict[str, str] | None = None) -> None:
    """Register package ``name`` without running its ``__init__`` until one of its own attributes is used.

    Its submodules import as usual. ``provides`` maps attributes to the
    submodule that defines them (``{"wpdivmod": "nvalchemiops.math.math"}``),
    so that ``from package import wpdivmod`` costs only that submodule. The
    first look-up of any other attribute (``nvalchemiops.torch.fire2_step_coord``),
    or of a provided one its submodule no longer defines, runs the real
    ``__init__`` then, so the package stays complete for every other user.
    """
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader
    sources = provides or {}

    def complete(attribute: str) -> Any:
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if attribute in sources:
            found = getattr(importlib.import_module(sources[attribute]), attribute, None)
            if found is not None:
                setattr(package, attribute, found)
                return found
        del package.__dict__["__getattr__"]
        loader.exec_module(package)
        return getattr(package, attribute)

    package.__dict__["__getattr__"] = complete
    sys.modules[name] = package
    parent, _, child = name.rpartition(".")
    setattr(importlib.import_module(parent), child, package)


def _without_dynamo_import(module: ModuleType) -> None:
    """Let ``module``'s torch custom ops run without importing ``torch._dynamo`` (seconds, once per process).

    torch wraps each custom-op kernel in ``torch._disable_dynamo``, which
    imports ``torch._dynamo`` on the kernel's first call to build its
    "not under torch.compile" twin, and caches that twin on the kernel as
    ``__dynamo_disable``. Nothing here runs under ``torch.compile``, so the
    kernel itself is that twin. Kernels of another torch layout are left as
    they are (they then import dynamo as before).
    """
    if "torch._dynamo" in sys.modules:  # already paid for: keep torch's own wrapping
        return
    from torch._library.custom_ops import CustomOpDef

    for value in vars(module).values():
        if not isinstance(value, CustomOpDef):
            continue
        for kernel in getattr(value, "_backend_fns", {}).values():
            target = getattr(kernel, "__wrapped__", None)
            if target is not None and getattr(target, "__dynamo_disable", None) is None:
                target.__dynamo_disable = target


@functools.cache
def _cell_list_module() -> ModuleType:
    """``nvalchemiops.torch.neighbors.batch_cell_list``, imported once, without the packages around it."""
    initialised_warp()
    _lazy_package("nvalchemiops.math", provides={"wpdivmod": "nvalchemiops.math.math"})
    for package in ("nvalchemiops.neighbors", "nvalchemiops.torch", "nvalchemiops.torch.neighbors"):
        _lazy_package(package)
    import nvalchemiops.torch.neighbors.batch_cell_list as cell_list

    for name, module in list(sys.modules.items()):
        if name.startswith("nvalchemiops.torch.neighbors") and module is not None:
            _without_dynamo_import(module)
    return cell_list


@functools.cache
def ops_batch_cell_list() -> Callable[..., Any]:
    """``nvalchemiops``' batched cell list (``batch_cell_list``), imported once."""
    return _cell_list_module().batch_cell_list


def cell_list_workspace(
    cell: torch.Tensor, pbc: torch.Tensor, cutoff: float, atoms: int
) -> dict[str, torch.Tensor]:
    """Grid sizes and buffers of ``nvalchemiops``' batched cell list, as keyword arguments.

    Passed to every build, they spare the library from sizing the grid again
    (which reads the cell on the host). Valid while the cell, ``pbc``, the
    cutoff and the number of atoms stay as they were.
    """
    cell_list = _cell_list_module()
    from nvalchemiops.torch.neighbors.neighbor_utils import allocate_cell_list

    total_cells, search_radius = cell_list.estimate_batch_cell_list_sizes(cell, pbc, cutoff)
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
