"""ASE's cell filters in the look-alike optimizers: their settings as batch fields, their state kept current.

The filter objects stay ASE's own (``filter.atoms`` is the system; ``ase.io``
writes the atoms behind a filter as ASE does); each system's filter kind,
reference cell, mask, factors, pressure and flags become the per-system
fields of :mod:`nvalchemi_ase.dynamics.variable_cell`, and the device does
the filter's work. Systems given as plain ``Atoms`` in a list with filters are
relaxed at fixed cell (kind ``NONE``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase.filters import ExpCellFilter, FrechetCellFilter, StrainFilter, UnitCellFilter

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.ops.cell_filter import CellFilterKind

__all__ = ["add_filter_fields", "is_cell_filter", "sync_filter"]

_KINDS = (
    (FrechetCellFilter, CellFilterKind.FRECHET),
    (ExpCellFilter, CellFilterKind.EXP),
    (UnitCellFilter, CellFilterKind.UNIT),
    (StrainFilter, CellFilterKind.STRAIN),
)


def is_cell_filter(obj: Any) -> bool:
    """Whether ``obj`` is one of ASE's cell filters (subclasses included)."""
    return isinstance(obj, UnitCellFilter | StrainFilter)


def _kind(filt: Any) -> CellFilterKind:
    if filt is None:
        return CellFilterKind.NONE
    return next(kind for cls, kind in _KINDS if isinstance(filt, cls))


def _settings(filt: Any) -> dict[str, Any]:
    """One system's field values (host), ASE's attributes read as they are now."""
    if filt is None:
        return {
            "reference": None,
            "mask": np.ones((3, 3)),
            "factors": (1.0, 1.0),
            "pressure": 0.0,
            "flags": (0, 0),
        }
    if isinstance(filt, StrainFilter):
        if filt.include_ideal_gas:
            raise NotImplementedError(
                "StrainFilter(include_ideal_gas=True) is not supported by the look-alikes"
            )
        mask = np.zeros((3, 3))
        mask[:2] = np.asarray(filt.mask, dtype=float).reshape(2, 3)
        return {
            "reference": np.array(filt.origcell, dtype=float),
            "mask": mask,
            "factors": (1.0, 1.0),
            "pressure": 0.0,
            "flags": (0, 0),
        }
    exp_factor = getattr(filt, "exp_cell_factor", 1.0)
    return {
        "reference": np.array(filt.orig_cell, dtype=float),
        "mask": np.asarray(filt.mask, dtype=float),  # bool masks as 0/1
        "factors": (float(filt.cell_factor), float(exp_factor)),
        "pressure": float(filt.scalar_pressure),
        "flags": (bool(filt.hydrostatic_strain), bool(filt.constant_volume)),
    }


def add_filter_fields(batch: Batch, filters: Sequence[Any]) -> None:
    """The cell-filter fields of ``batch`` from each system's ASE filter (None: a fixed-cell system)."""
    settings = [_settings(filt) for filt in filters]
    cells = batch.cell.detach().cpu().numpy()
    references = np.stack(
        [cells[b] if s["reference"] is None else s["reference"] for b, s in enumerate(settings)]
    )
    strains = np.zeros((len(filters), 3, 3))
    for b, filt in enumerate(filters):
        if isinstance(filt, StrainFilter):
            strains[b, :2] = np.asarray(filt.strain, dtype=float).reshape(2, 3)
    masks = np.stack([s["mask"] for s in settings])
    host = {
        "cell_filter_kind": np.array([int(_kind(f)) for f in filters]),
        "cell_reference": references,
        "cell_mask": masks,
        "cell_factor": np.array([s["factors"][0] for s in settings]),
        "cell_exp_factor": np.array([s["factors"][1] for s in settings]),
        "cell_pressure": np.array([s["pressure"] for s in settings]),
        "cell_hydrostatic": np.array([s["flags"][0] for s in settings], dtype=bool),
        "cell_constant_volume": np.array([s["flags"][1] for s in settings], dtype=bool),
        "cell_strain": strains,
    }
    for name, values in host.items():
        dtype = batch.dtype if values.dtype.kind == "f" else None
        batch.add_field(name, torch.as_tensor(values, dtype=dtype, device=batch.device), Scope.SYSTEM)


def sync_filter(filt: Any, strain_rows: np.ndarray) -> None:
    """Keep a ``StrainFilter``'s own ``strain`` equal to the device's (other filters hold no state)."""
    if isinstance(filt, StrainFilter):
        filt.strain[:] = strain_rows[:2].reshape(6)
