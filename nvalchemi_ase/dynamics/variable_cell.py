"""Variable-cell relaxation in the engine optimizers: ASE's cell filters, per system, on the device.

An optimizer given a :class:`CellFilter` moves each system's atoms *and* its
cell: it sees ``n + 3`` rows per system (see
:mod:`nvalchemi_ase.ops.cell_filter`), the atoms in the undeformed cell and
three cell rows whose forces come from the stress. The filter's settings are
per-system batch fields, created from the engine's defaults when a system
enters without them, so each system keeps its own pressure, mask and kind
through slicing, joining and inflight refills:

=========================  ===========  =========================================
field                      shape        meaning
=========================  ===========  =========================================
``cell_filter_kind``       ``[B]``      :class:`~nvalchemi_ase.ops.cell_filter.CellFilterKind`
``cell_reference``         ``[B,3,3]``  the undeformed cell (ASE's ``orig_cell``)
``cell_mask``              ``[B,3,3]``  1/0 on the cell force (STRAIN: row layout)
``cell_factor``            ``[B]``      ASE's ``cell_factor`` (default: atom count)
``cell_exp_factor``        ``[B]``      ASE's ``exp_cell_factor`` (default: atom count)
``cell_pressure``          ``[B]``      applied pressure, eV/Å³ (ASE's ``scalar_pressure``)
``cell_hydrostatic``       ``[B]``      ``hydrostatic_strain``
``cell_constant_volume``   ``[B]``      ``constant_volume``
``cell_strain``            ``[B,3,3]``  STRAIN's state (its two rows of strain)
=========================  ===========  =========================================

An optimizer's per-atom state (FIRE's velocities, BFGS's previous positions,
...) gets a companion ``<name>_cell [B, 3, ...]`` for the cell rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase.stress import voigt_6_to_full_3x3_stress

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.ops.cell_filter import (
    CellFilterKind,
    CellFilterParameters,
    filter_energy,
    generalized_forces,
    generalized_positions,
    move,
    row_layout,
)
from nvalchemi_ase.ops.segment import segment_max, xyz_sum
from nvalchemi_ase.units import GPa

__all__ = ["CELL_FIELDS", "CellFilter", "Coordinates", "generalized_max_force", "has_cell_filter"]

CELL_FIELDS = (
    "cell_filter_kind",
    "cell_reference",
    "cell_mask",
    "cell_factor",
    "cell_exp_factor",
    "cell_pressure",
    "cell_hydrostatic",
    "cell_constant_volume",
    "cell_strain",
)
"""The per-system batch fields of a cell filter (see the module docstring)."""

_KINDS = {"unit": CellFilterKind.UNIT, "frechet": CellFilterKind.FRECHET, "exp": CellFilterKind.EXP}
_KINDS["strain"] = CellFilterKind.STRAIN


def has_cell_filter(batch: Batch) -> bool:
    """Whether the batch carries cell-filter fields."""
    return "cell_filter_kind" in batch.field_names()


def parameters(batch: Batch) -> CellFilterParameters:
    """The batch's cell-filter fields as :class:`~nvalchemi_ase.ops.cell_filter.CellFilterParameters`."""
    return CellFilterParameters(
        batch.cell_filter_kind,
        batch.cell_reference,
        batch.cell_mask,
        batch.cell_factor,
        batch.cell_exp_factor,
        batch.cell_pressure,
        batch.cell_hydrostatic,
        batch.cell_constant_volume,
    )


def _stress(batch: Batch) -> torch.Tensor:
    if batch.stress is None:
        raise ValueError("a cell filter needs the stress: the batch has none (does the model compute it?)")
    return batch.stress


def generalized_max_force(batch: Batch) -> torch.Tensor:
    """``[B]`` the largest row norm of the filter's forces (atoms and cell), ASE's ``fmax`` test."""
    params = parameters(batch)
    atom_rows, cell_rows = generalized_forces(
        batch.forces, _stress(batch), batch.cell, params, batch.batch_idx
    )
    atoms = segment_max(xyz_sum(atom_rows.square()), batch.batch_idx, batch.num_graphs)
    return torch.maximum(atoms, cell_rows.square().sum(dim=2).amax(dim=1)).sqrt()


def residual_stress(batch: Batch) -> torch.Tensor:
    """``[B]`` the largest component of ``σ + p I`` on the relaxed components (mask), eV/Å³."""
    stress = _stress(batch)
    eye = torch.eye(3, dtype=stress.dtype, device=stress.device)
    residual = (stress + batch.cell_pressure.view(-1, 1, 1) * eye).abs()
    mask = torch.where(
        (batch.cell_filter_kind == int(CellFilterKind.STRAIN)).view(-1, 1, 1),
        torch.ones_like(batch.cell_mask),
        batch.cell_mask,
    )
    return torch.where(batch.cell_filter_kind == 0, 0.0, (residual * mask).flatten(1).amax(dim=1))


def enthalpy(batch: Batch) -> torch.Tensor:
    """``[B]`` the energy the filter presents: ``E + p V`` (STRAIN and unfiltered systems: ``E``)."""
    return filter_energy(batch.energy.view(-1), batch.cell, parameters(batch))


class CellFilter:
    """The cell degrees of freedom an engine optimizer relaxes with the atoms (ASE's cell filters).

    Parameters
    ----------
    kind
        ``"frechet"`` (ASE's ``FrechetCellFilter``, the default), ``"unit"``
        (``UnitCellFilter``), ``"exp"`` (``ExpCellFilter``) or ``"strain"``
        (``StrainFilter``: the cell only, atoms scaled with it).
    scalar_pressure
        Applied pressure, eV/Å³ (a float, or ``[B]`` per system); see ``pressure_GPa``.
    pressure_GPa
        The same in GPa (give one of the two).
    mask
        Six Voigt flags (xx, yy, zz, yz, xz, xy) or a 3×3 array: which cell
        components relax (ASE's ``mask``).
    hydrostatic_strain, constant_volume
        As ASE's filters.
    cell_factor, exp_cell_factor
        As ASE (default: each system's atom count).

    Notes
    -----
    Systems that enter an engine already carrying the fields (:data:`CELL_FIELDS`)
    keep their own values; the others get these defaults, with their current
    cell as the reference.
    """

    def __init__(
        self,
        kind: str = "frechet",
        scalar_pressure: float | torch.Tensor = 0.0,
        *,
        pressure_GPa: float | None = None,
        mask: Any = None,
        hydrostatic_strain: bool = False,
        constant_volume: bool = False,
        cell_factor: float | None = None,
        exp_cell_factor: float | None = None,
    ) -> None:
        if kind not in _KINDS:
            raise ValueError(f"CellFilter: kind must be one of {sorted(_KINDS)}, got {kind!r}")
        if pressure_GPa is not None:
            scalar_pressure = float(pressure_GPa) * GPa
        if mask is None:
            mask = np.ones(6)
        mask = np.asarray(mask, dtype=float)
        if mask.shape not in {(6,), (3, 3)}:
            raise ValueError(f"CellFilter: mask must have 6 Voigt flags or be 3x3, got shape {mask.shape}")
        if kind == "strain":
            if mask.shape != (6,):
                raise ValueError("CellFilter: a strain filter's mask has 6 Voigt flags")
            mask = np.concatenate([mask, np.zeros(3)]).reshape(3, 3)
        elif mask.shape == (6,):
            mask = voigt_6_to_full_3x3_stress(mask)
        for name, factor in (("cell_factor", cell_factor), ("exp_cell_factor", exp_cell_factor)):
            if factor is not None and not factor > 0.0:
                raise ValueError(f"CellFilter: {name} must be positive, got {factor}")
        self.kind = _KINDS[kind]
        self.scalar_pressure = scalar_pressure
        self.mask = mask
        self.hydrostatic_strain = bool(hydrostatic_strain)
        self.constant_volume = bool(constant_volume)
        self.cell_factor = cell_factor
        self.exp_cell_factor = exp_cell_factor

    def __repr__(self) -> str:
        return f"CellFilter(kind={self.kind.name.lower()!r}, scalar_pressure={self.scalar_pressure!r})"

    def init_state(self, batch: Batch) -> None:
        """Give the batch the filter fields it lacks (this filter's defaults for every system)."""
        if has_cell_filter(batch):
            return
        periodic = batch.pbc.all(dim=1)
        if not bool(periodic.all()):
            first = int(torch.nonzero(~periodic)[0, 0])
            raise ValueError(f"system {first}: pbc is not all True; a cell filter needs a periodic cell")
        num, like = batch.num_graphs, batch.cell
        counts = (batch.ptr[1:] - batch.ptr[:-1]).to(like.dtype)
        unit_like = self.kind in (CellFilterKind.UNIT, CellFilterKind.FRECHET)
        factor = (
            counts
            if unit_like and self.cell_factor is None
            else like.new_full((num,), self.cell_factor or 1.0)
        )
        exp_factor = counts if self.exp_cell_factor is None else like.new_full((num,), self.exp_cell_factor)
        pressure = torch.as_tensor(self.scalar_pressure, dtype=like.dtype, device=like.device)
        values = {
            "cell_filter_kind": torch.full((num,), int(self.kind), dtype=torch.long, device=like.device),
            "cell_reference": like.clone(),
            "cell_mask": torch.as_tensor(self.mask, dtype=like.dtype, device=like.device)
            .expand(num, 3, 3)
            .clone(),
            "cell_factor": factor,
            "cell_exp_factor": exp_factor,
            "cell_pressure": pressure.expand(num).clone(),
            "cell_hydrostatic": torch.full((num,), self.hydrostatic_strain, device=like.device),
            "cell_constant_volume": torch.full((num,), self.constant_volume, device=like.device),
            "cell_strain": torch.zeros_like(like),
        }
        for name, value in values.items():
            batch.add_field(name, value, Scope.SYSTEM)


class Coordinates:
    """What an optimizer step moves: the atoms, or with a cell filter each system's ``n + 3`` rows.

    ``positions``, ``forces`` ``[M, 3]``, ``batch_idx [M]`` and ``ptr [B + 1]``
    of the rows; :meth:`state` and :meth:`store` read and write per-row state
    fields (atoms plus their ``<name>_cell`` companions); :meth:`move` puts new
    row positions back as positions and cells. Without a cell filter it is the
    batch itself, at no cost.
    """

    def __init__(self, batch: Batch, cell_filter: CellFilter | None) -> None:
        self.batch = batch
        self.cell_filter = cell_filter
        if cell_filter is None:
            self.positions, self.forces = batch.positions, batch.forces
            self.batch_idx, self.ptr = batch.batch_idx, batch.ptr
            return
        self.params = parameters(batch)
        self.layout = row_layout(batch.batch_idx, batch.ptr)
        counts = batch.ptr[1:] - batch.ptr[:-1]
        atoms, cells = generalized_positions(
            batch.positions, batch.cell, batch.cell_strain, self.params, batch.batch_idx, counts
        )
        self.positions = self.layout.join(atoms, cells)
        atoms, cells = generalized_forces(
            batch.forces, _stress(batch), batch.cell, self.params, batch.batch_idx
        )
        self.forces = self.layout.join(atoms, cells)
        self.batch_idx, self.ptr = self.layout.batch_idx, self.layout.ptr

    def state(self, name: str) -> torch.Tensor:
        """The per-row state ``name`` (``[M, ...]``)."""
        atoms = getattr(self.batch, name)
        if self.cell_filter is None:
            return atoms
        return self.layout.join(atoms, getattr(self.batch, f"{name}_cell"))

    def store(self, name: str, rows: torch.Tensor) -> None:
        """Write the per-row state ``name`` back."""
        if self.cell_filter is None:
            setattr(self.batch, name, rows)
            return
        atoms, cells = self.layout.split(rows)
        setattr(self.batch, name, atoms)
        setattr(self.batch, f"{name}_cell", cells)

    def move(self, rows: torch.Tensor) -> None:
        """New row positions: the atoms' positions, and with a filter the cells (and strains) too."""
        batch = self.batch
        if self.cell_filter is None:
            batch.positions = rows
            return
        atoms, cells = self.layout.split(rows)
        batch.positions, batch.cell, batch.cell_strain = move(
            atoms, cells, batch.positions, batch.cell, self.params, batch.batch_idx
        )


def add_row_companions(batch: Batch, names: tuple[str, ...]) -> None:
    """Zero ``<name>_cell [B, 3, ...]`` companions for the per-row state ``names`` (when missing)."""
    fields = batch.field_names()
    for name in names:
        if f"{name}_cell" not in fields:
            atoms = getattr(batch, name)
            zeros = atoms.new_zeros((batch.num_graphs, 3, *atoms.shape[1:]))
            batch.add_field(f"{name}_cell", zeros, Scope.SYSTEM)


def cell_state_fields(names: tuple[str, ...]) -> tuple[str, ...]:
    """The extra state fields an optimizer holds with a cell filter: cell, strain and row companions."""
    return ("cell", "cell_strain", *(f"{name}_cell" for name in names))


def attach(engine: Any, cell_filter: CellFilter | None, row_fields: tuple[str, ...]) -> None:
    """Set ``engine.cell_filter``; with one, ask the model for the stress and hold the cell state."""
    engine.cell_filter = cell_filter
    if cell_filter is None:
        return
    if not isinstance(cell_filter, CellFilter):
        raise TypeError(f"cell_filter must be a CellFilter, got {cell_filter!r}")
    if "stress" not in engine.model.implemented_properties:
        raise TypeError(
            f"model {type(engine.model).__name__} does not implement stress, which a cell filter needs"
        )
    engine.request_property("stress")
    engine.row_fields = row_fields
    engine.state_fields = (*engine.state_fields, *cell_state_fields(row_fields))


def init_state(engine: Any, batch: Batch) -> None:
    """The filter's fields and the row companions of ``engine``'s state (when it has a filter)."""
    if engine.cell_filter is not None:
        engine.cell_filter.init_state(batch)
        add_row_companions(batch, engine.row_fields)
