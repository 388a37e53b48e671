"""``LoggingHook``: one row per system per firing, to CSV, an ASE-style text log or a callable.

Columns, in order: ``step``, ``system`` (``batch.system_id``), ``status``,
``energy`` (eV), ``fmax`` (largest per-atom force norm, eV/Å), ``temperature``
(K, ``2 KE / (ndof k_B)`` with ``ndof = 3 × (atoms not frozen)``, as ASE's
``Atoms.get_temperature`` with ``FixAtoms``), then one column per custom
scalar. Every column is computed on the device, the columns are stacked, and
the stack is copied to the host once per firing: that copy is the hook's only
device→host sync.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.segment import segment_sum
from nvalchemi_ase.ops.thermo import kinetic_energy, max_force, temperature

BACKENDS = ("csv", "text", "custom")
BASE_COLUMNS = ("step", "system", "status", "energy", "fmax", "temperature")
"""The built-in columns, in the order they are written."""
INTEGER_COLUMNS = frozenset({"step", "system", "status"})

Scalar = Callable[[HookContext], "torch.Tensor | float"]
Row = dict[str, Any]
WriterFn = Callable[[int, list[Row]], None]

_TEXT_HEADERS = {"step": "Step", "system": "System", "status": "Status", "energy": "Epot[eV]"}
_TEXT_HEADERS.update({"fmax": "Fmax[eV/Å]", "temperature": "T[K]"})
_TEXT_FORMATS = {"step": "{:>8d}", "system": "{:>8d}", "status": "{:>6d}", "energy": "{:>16.6f}"}
_TEXT_FORMATS.update({"fmax": "{:>12.6f}", "temperature": "{:>10.2f}"})
_TEXT_WIDTHS = {"step": 8, "system": 8, "status": 6, "energy": 16, "fmax": 12, "temperature": 10}
_CUSTOM_WIDTH = 16


def _check_frequency(frequency: int) -> int:
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
    return frequency


def _check_log_path(log_path: str | os.PathLike[str] | None) -> str | None:
    if log_path is None or str(log_path) == "-":
        return None if log_path is None else "-"
    parent = Path(log_path).expanduser().resolve().parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise ValueError(
            f"log_path {str(log_path)!r}: directory {str(parent)!r} does not exist or is not writable"
        )
    return str(log_path)


class LoggingHook:
    """Log per-system observables every ``frequency`` steps.

    Parameters
    ----------
    frequency
        Fire when ``step_count % frequency == 0`` (so at step 0).
    backend
        ``"csv"`` (a header, then one row per system per firing), ``"text"``
        (an ASE ``MDLogger``-style fixed-width log) or ``"custom"`` (rows are
        handed to ``writer_fn``).
    log_path
        File to write (``"-"``: standard output). Required for ``"csv"``; for
        ``"text"``, ``None`` also means standard output.
    custom_scalars
        Extra columns: ``name -> callable(ctx)`` returning a ``[B]`` tensor or
        a float (broadcast to every system).
    writer_fn
        For ``"custom"``: called as ``writer_fn(step, rows)``, ``rows`` a list
        of dicts (one per system) keyed by the column names.
    stage
        Where the hook fires (default ``AFTER_STEP``).

    Notes
    -----
    The file is opened on the first write (mode ``"w"``, header first) and
    flushed after every write, so an interrupted run leaves a readable log.
    :meth:`close` (called when ``run`` ends) closes it; a later firing reopens
    it in append mode without a second header. Closing twice is safe.
    """

    def __init__(
        self,
        frequency: int = 1,
        backend: str = "csv",
        log_path: str | os.PathLike[str] | None = None,
        custom_scalars: Mapping[str, Scalar] | None = None,
        writer_fn: WriterFn | None = None,
        stage: DynamicsStage = DynamicsStage.AFTER_STEP,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "csv" and log_path is None:
            raise ValueError("backend 'csv' requires log_path (a file name, or '-' for standard output)")
        if backend == "custom" and not callable(writer_fn):
            raise ValueError("backend 'custom' requires writer_fn, a callable(step, rows)")
        scalars = dict(custom_scalars or {})
        for name, fn in scalars.items():
            if not isinstance(name, str) or name in BASE_COLUMNS or not callable(fn):
                raise ValueError(
                    f"custom_scalars: {name!r} must be a new column name (not one of {BASE_COLUMNS}) "
                    "mapped to a callable(ctx)"
                )
        if not isinstance(stage, DynamicsStage):
            raise TypeError(f"stage must be a DynamicsStage, got {stage!r}")
        self.frequency = _check_frequency(frequency)
        self.backend = backend
        self.log_path = _check_log_path(log_path) if backend != "custom" else None
        self.custom_scalars = scalars
        self.writer_fn = writer_fn
        self.stage = stage
        self.columns: tuple[str, ...] = (*BASE_COLUMNS, *scalars)
        self._file: IO[str] | None = None
        self._owns_file = False
        self._header_written = False

    # ------------------------------------------------------------------ firing
    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        self.write_rows(ctx.step_count, self.rows(ctx))

    def rows(self, ctx: HookContext) -> list[Row]:
        """The rows of this firing, one per system (one device→host copy)."""
        values = self.column_values(ctx).tolist()  # the firing's only sync
        names = self.columns[1:]
        return [
            {
                "step": ctx.step_count,
                **{n: int(v) if n in INTEGER_COLUMNS else v for n, v in zip(names, row, strict=True)},
            }
            for row in zip(*values, strict=True)
        ]

    def column_values(self, ctx: HookContext) -> torch.Tensor:
        """``[C-1, B]`` float64 on the device: every column but ``step``, in column order."""
        batch = ctx.batch
        size = batch.num_graphs
        columns = [*observables(batch)]
        for name, fn in self.custom_scalars.items():
            columns.append(_as_column(name, fn(ctx), size, batch.device))
        return torch.stack([column.to(torch.float64) for column in columns])

    # ------------------------------------------------------------------ output
    def write_rows(self, step: int, rows: list[Row]) -> None:
        """Send rows to the backend (and flush the file)."""
        if self.backend == "custom":
            assert self.writer_fn is not None
            self.writer_fn(step, rows)
            return
        stream = self._stream()
        if self.backend == "csv":
            csv.writer(stream, lineterminator="\n").writerows(
                [[row[c] for c in self.columns] for row in rows]
            )
        else:
            stream.write("".join(self._text_line(row) + "\n" for row in rows))
        stream.flush()

    def _stream(self) -> IO[str]:
        if self._file is None:
            if self.log_path in (None, "-"):
                self._file, self._owns_file = sys.stdout, False
            else:
                assert self.log_path is not None
                mode = "a" if self._header_written else "w"
                self._file = open(self.log_path, mode, encoding="utf-8", newline="")
                self._owns_file = True
            if not self._header_written:
                self._file.write(self._header() + "\n")
                self._header_written = True
        return self._file

    def _header(self) -> str:
        if self.backend == "csv":
            return ",".join(self.columns)
        return " ".join(
            _TEXT_HEADERS[c].rjust(_TEXT_WIDTHS[c]) if c in _TEXT_HEADERS else c.rjust(_CUSTOM_WIDTH)
            for c in self.columns
        )

    def _text_line(self, row: Row) -> str:
        return " ".join(
            _TEXT_FORMATS[c].format(row[c]) if c in _TEXT_FORMATS else f"{row[c]:>{_CUSTOM_WIDTH}.6g}"
            for c in self.columns
        )

    def close(self) -> None:
        """Close the log file (standard output is left open); safe to call twice."""
        stream, self._file = self._file, None
        if stream is not None and self._owns_file:
            stream.close()
        self._owns_file = False

    def __enter__(self) -> LoggingHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LoggingHook(frequency={self.frequency}, backend={self.backend!r}, log_path={self.log_path!r}, "
            f"columns={list(self.columns)})"
        )


def observables(batch: Batch) -> tuple[torch.Tensor, ...]:
    """``[B]`` system id, status, energy (eV), fmax (eV/Å) and temperature (K), on the device.

    Energy and fmax are NaN while the batch has no energy or forces.
    """
    size, index = batch.num_graphs, batch.batch_idx
    nan = torch.full((size,), float("nan"), dtype=batch.dtype, device=batch.device)
    energy = nan if batch.energy is None else batch.energy.reshape(-1)
    fmax = nan if batch.forces is None else max_force(batch.forces, index, size, batch.ptr)
    moving = (batch.atom_categories != AtomCategory.FROZEN.value).to(batch.dtype)
    dof = 3.0 * segment_sum(moving, index, size)
    kinetic = kinetic_energy(batch.velocities, batch.masses, index, size)
    return batch.system_id, batch.status, energy, fmax, temperature(kinetic, dof)


def _as_column(name: str, value: torch.Tensor | float, size: int, device: torch.device) -> torch.Tensor:
    """A custom scalar's value as a ``[B]`` tensor on ``device`` (a float or one-element tensor broadcast)."""
    if not isinstance(value, torch.Tensor):
        return torch.full((size,), float(value), dtype=torch.float64, device=device)
    value = value.detach().to(device)
    if value.numel() == 1:
        return value.reshape(1).expand(size)
    if value.numel() != size:
        raise ValueError(
            f"custom scalar {name!r} returned shape {tuple(value.shape)}, expected [{size}] or a float"
        )
    return value.reshape(size)


__all__ = ["BASE_COLUMNS", "LoggingHook", "observables"]
