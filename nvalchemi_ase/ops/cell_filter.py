"""ASE's cell filters as pure tensor maps, per system: generalized coordinates, forces and their inverse.

A cell filter presents each system to an optimizer as ``n + 3`` rows: the
atoms' positions in the undeformed cell and three rows for the cell. With
``F`` the deformation gradient from the reference cell ``C₀`` (see
:mod:`nvalchemi_ase.ops.cell_matrix`), ``W = −V (σ + p I)`` the virial and ``f`` the
atomic forces, per kind (``ase.filters``, 3.29)::

    UNIT      x = r F⁻ᵀ,  X = c F;                       f F,  W F⁻ᵀ / c
    FRECHET   x = r F⁻ᵀ,  X = e (log F + ln n I);         f F,  L(log Fᵀ, W F⁻ᵀ) / e
    EXP       x = r F⁻ᵀ,  X = F;                          f F,  L(log F, W exp(−log F)) (or W, see below)
    STRAIN    the strain ε (6 numbers, rows xx yy zz / yz xz xy); −V σ·mask (atom rows zero)
    NONE      x = r (the atoms as they are), no cell rows (zero forces)

(``c`` is ``cell_factor``, ``e`` ``exp_cell_factor``, ``n`` the system's atom
count.) Before use the cell force is made hydrostatic (``tr W / 3 · I``) when
asked, multiplied by the mask, and made traceless for constant volume, in
ASE's order for each kind. EXP keeps the plain ``W`` when it points within
cos > 0.8 of the exact derivative, as ASE does. Moving back: the cell rows give
``F'`` (``X / c``; FRECHET ``exp(X / e) / c``), ``T = I + (F' − I)·mask``,
``C = C₀ T`` and ``r = x T``; STRAIN sets ``C = C₀ (I + ε)`` (ε symmetric, off
diagonal halves) and scales the atoms with the cell. The energy an optimizer
sees is ``E + p V`` (STRAIN and NONE: ``E``).

Rows of the atoms and cells of all systems are laid out system after system
(:func:`row_layout`), so the optimizers' per-system reductions apply unchanged.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import torch

from nvalchemi_ase.ops.cell_matrix import (
    deformation_gradient,
    expm,
    expm_frechet,
    inverse,
    logm,
    virial,
    volume,
)
from nvalchemi_ase.ops.segment import segment_broadcast

__all__ = [
    "CellFilterKind",
    "CellFilterParameters",
    "RowLayout",
    "deformation",
    "filter_energy",
    "generalized_forces",
    "generalized_positions",
    "move",
    "row_layout",
]


class CellFilterKind(enum.IntEnum):
    """Which ASE filter a system is seen through (``0`` none)."""

    NONE = 0
    UNIT = 1
    FRECHET = 2
    EXP = 3
    STRAIN = 4


class CellFilterParameters(NamedTuple):
    """Per-system filter settings, all on the device.

    ``kind [B]`` long (:class:`CellFilterKind`), ``reference [B, 3, 3]`` (ASE's
    ``orig_cell``), ``mask [B, 3, 3]`` (0/1 on the cell force; STRAIN: the
    six-component mask in its row layout, third row zero), ``cell_factor [B]``,
    ``exp_cell_factor [B]``, ``pressure [B]`` eV/Å³, ``hydrostatic [B]`` bool,
    ``constant_volume [B]`` bool.
    """

    kind: torch.Tensor
    reference: torch.Tensor
    mask: torch.Tensor
    cell_factor: torch.Tensor
    exp_cell_factor: torch.Tensor
    pressure: torch.Tensor
    hydrostatic: torch.Tensor
    constant_volume: torch.Tensor


class RowLayout(NamedTuple):
    """Where atom ``i`` and cell row ``(b, k)`` sit among the ``N + 3B`` generalized rows.

    ``atoms [N]``, ``cells [B, 3]`` row indices; ``batch_idx [N + 3B]`` and
    ``ptr [B + 1]`` of the rows.
    """

    atoms: torch.Tensor
    cells: torch.Tensor
    batch_idx: torch.Tensor
    ptr: torch.Tensor

    def join(self, atom_rows: torch.Tensor, cell_rows: torch.Tensor) -> torch.Tensor:
        """``[N, ...]`` and ``[B, 3, ...]`` as ``[N + 3B, ...]`` in this layout."""
        shape = (atom_rows.shape[0] + 3 * cell_rows.shape[0], *atom_rows.shape[1:])
        rows = atom_rows.new_empty(shape).index_copy_(0, self.atoms, atom_rows)
        return rows.index_copy_(0, self.cells.reshape(-1), cell_rows.reshape(-1, *atom_rows.shape[1:]))

    def split(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The inverse of :meth:`join`."""
        cells = rows.index_select(0, self.cells.reshape(-1))
        return rows.index_select(0, self.atoms), cells.reshape(-1, 3, *rows.shape[1:])


def row_layout(batch_idx: torch.Tensor, ptr: torch.Tensor) -> RowLayout:
    """The generalized-row layout of a batch (each system's atoms, then its three cell rows)."""
    num = ptr.shape[0] - 1
    systems = torch.arange(num, device=ptr.device)
    atoms = torch.arange(batch_idx.shape[0], device=ptr.device) + 3 * batch_idx
    cells = (ptr[1:] + 3 * systems).unsqueeze(1) + torch.arange(3, device=ptr.device)
    rows_idx = torch.cat([batch_idx, systems.repeat_interleave(3)])
    rows_idx = torch.empty_like(rows_idx).index_copy_(0, torch.cat([atoms, cells.reshape(-1)]), rows_idx)
    return RowLayout(atoms, cells, rows_idx, ptr + 3 * torch.arange(num + 1, device=ptr.device))


def _is(params: CellFilterParameters, *kinds: CellFilterKind) -> torch.Tensor:
    hit = torch.zeros_like(params.kind, dtype=torch.bool)
    for kind in kinds:
        hit = hit | (params.kind == int(kind))
    return hit


def _per_system(flag: torch.Tensor) -> torch.Tensor:
    return flag.view(-1, 1, 1)


def deformation(cell: torch.Tensor, params: CellFilterParameters) -> tuple[torch.Tensor, torch.Tensor]:
    """``F`` (exactly ``I`` for STRAIN and NONE) and ``log F``, each ``[B, 3, 3]``: compute once per step."""
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device).expand_as(cell)
    deforming = _is(params, CellFilterKind.UNIT, CellFilterKind.FRECHET, CellFilterKind.EXP)
    deform = torch.where(_per_system(deforming), deformation_gradient(params.reference, cell), eye)
    return deform, logm(deform)


def _per_atom_product(rows: torch.Tensor, matrices: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
    """``rows[i] @ matrices[batch_idx[i]]`` for every atom: ``[N, 3]``."""
    return torch.einsum("na,nab->nb", rows, segment_broadcast(matrices, batch_idx))


def generalized_positions(
    positions: torch.Tensor,
    cell: torch.Tensor,
    strain: torch.Tensor,
    params: CellFilterParameters,
    batch_idx: torch.Tensor,
    counts: torch.Tensor,
    deformed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filters' ``get_positions()``: atom rows ``[N, 3]`` and cell rows ``[B, 3, 3]``.

    ``strain [B, 3, 3]`` is the STRAIN filters' state (their cell rows);
    ``counts [B]`` the atoms per system; ``deformed`` the :func:`deformation`
    of ``cell`` when already known.
    """
    deform, log_deform = deformation(cell, params) if deformed is None else deformed
    inverse_t = inverse(deform).transpose(-1, -2)
    atom_rows = _per_atom_product(positions, inverse_t, batch_idx)
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    log_n = torch.log(counts.to(cell.dtype)).view(-1, 1, 1)
    frechet = params.exp_cell_factor.view(-1, 1, 1) * (log_deform + log_n * eye)
    cells = params.cell_factor.view(-1, 1, 1) * deform
    cells = torch.where(_per_system(_is(params, CellFilterKind.FRECHET)), frechet, cells)
    cells = torch.where(_per_system(_is(params, CellFilterKind.STRAIN)), strain, cells)
    cells = torch.where(_per_system(_is(params, CellFilterKind.NONE)), torch.zeros_like(cells), cells)
    fixed = segment_broadcast(_is(params, CellFilterKind.STRAIN), batch_idx).unsqueeze(1)
    atom_rows = torch.where(fixed, torch.zeros_like(atom_rows), atom_rows)  # STRAIN: the atoms are no DOF
    return atom_rows, cells


def _hydrostatic_and_mask(w: torch.Tensor, params: CellFilterParameters) -> torch.Tensor:
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    trace = w.diagonal(dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
    w = torch.where(_per_system(params.hydrostatic), trace / 3.0 * eye, w)
    return w * params.mask


def _traceless(w: torch.Tensor, constant_volume: torch.Tensor) -> torch.Tensor:
    eye = torch.eye(3, dtype=w.dtype, device=w.device)
    trace = w.diagonal(dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
    return torch.where(_per_system(constant_volume), w - trace / 3.0 * eye, w)


def _exp_cell_force(w: torch.Tensor, log_deform: torch.Tensor) -> torch.Tensor:
    """ExpCellFilter's cell force: the exact derivative, or ``W`` when they agree (ASE's test)."""
    exact = expm_frechet(log_deform, w @ expm(-log_deform))
    exact = 0.5 * (exact + exact.transpose(-1, -2))  # ASE symmetrizes the off-diagonal pairs
    close = torch.isclose(exact, w).flatten(1).all(dim=1)
    cosine = (exact * w).sum((-1, -2)) / ((exact**2).sum((-1, -2)) * (w**2).sum((-1, -2))).sqrt()
    return torch.where(_per_system(close | (cosine > 0.8)), w, exact)


def generalized_forces(
    forces: torch.Tensor,
    stress: torch.Tensor,
    cell: torch.Tensor,
    params: CellFilterParameters,
    batch_idx: torch.Tensor,
    deformed: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The filters' ``get_forces()``: atom rows ``[N, 3]`` and cell rows ``[B, 3, 3]``.

    ``stress [B, 3, 3]`` eV/Å³ with ASE's sign (NONE systems may hold NaN: unused);
    ``deformed`` as in :func:`generalized_positions`.
    """
    deform, log_deform = deformation(cell, params) if deformed is None else deformed
    atom_rows = _per_atom_product(forces, deform, batch_idx)
    w = virial(stress, cell, params.pressure)
    inverse_t = inverse(deform).transpose(-1, -2)

    unit = _traceless(_hydrostatic_and_mask(w @ inverse_t, params), params.constant_volume)
    unit = unit / params.cell_factor.view(-1, 1, 1)

    masked = _hydrostatic_and_mask(w, params)
    frechet = expm_frechet(log_deform.transpose(-1, -2), masked @ inverse_t)
    frechet = _traceless(frechet, params.constant_volume) / params.exp_cell_factor.view(-1, 1, 1)
    exp = _traceless(_exp_cell_force(masked, log_deform), params.constant_volume)

    stress_rows = torch.stack(
        [
            stress.diagonal(dim1=-2, dim2=-1),
            torch.stack([stress[:, 1, 2], stress[:, 0, 2], stress[:, 0, 1]], 1),
        ],
        dim=1,
    )
    strain = -volume(cell).view(-1, 1, 1) * torch.cat(
        [stress_rows, stress_rows.new_zeros(stress.shape[0], 1, 3)], 1
    )
    strain = strain * params.mask

    cells = torch.where(_per_system(_is(params, CellFilterKind.FRECHET)), frechet, unit)
    cells = torch.where(_per_system(_is(params, CellFilterKind.EXP)), exp, cells)
    cells = torch.where(_per_system(_is(params, CellFilterKind.STRAIN)), strain, cells)
    cells = torch.where(_per_system(_is(params, CellFilterKind.NONE)), torch.zeros_like(cells), cells)
    atom_rows = torch.where(
        segment_broadcast(_is(params, CellFilterKind.STRAIN), batch_idx).unsqueeze(1),
        torch.zeros_like(atom_rows),
        atom_rows,
    )
    return atom_rows, cells


def filter_energy(energy: torch.Tensor, cell: torch.Tensor, params: CellFilterParameters) -> torch.Tensor:
    """``[B]`` what an optimizer sees as the energy: ``E + p V`` (STRAIN and NONE: ``E``)."""
    enthalpy = _is(params, CellFilterKind.UNIT, CellFilterKind.FRECHET, CellFilterKind.EXP)
    return torch.where(enthalpy, energy + params.pressure * volume(cell), energy)


def move(
    atom_rows: torch.Tensor,
    cell_rows: torch.Tensor,
    positions: torch.Tensor,
    cell: torch.Tensor,
    params: CellFilterParameters,
    batch_idx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The filters' ``set_positions()``: new positions ``[N, 3]``, cells and strains ``[B, 3, 3]``.

    ``positions`` and ``cell`` are the current ones (STRAIN scales them; NONE
    keeps the cell).
    """
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    factor = params.cell_factor.view(-1, 1, 1)
    target = cell_rows / factor
    frechet = expm(cell_rows / params.exp_cell_factor.view(-1, 1, 1)) / factor
    target = torch.where(_per_system(_is(params, CellFilterKind.FRECHET)), frechet, target)
    transform = eye + (target - eye).transpose(-1, -2) * params.mask
    deformed_cell = params.reference @ transform
    deformed_positions = _per_atom_product(atom_rows, transform, batch_idx)

    strain = cell_rows * params.mask
    xx_yy_zz, (yz, xz, xy) = strain[:, 0], strain[:, 1].unbind(-1)
    symmetric = torch.stack(
        [
            torch.stack([xx_yy_zz[:, 0], 0.5 * xy, 0.5 * xz], -1),
            torch.stack([0.5 * xy, xx_yy_zz[:, 1], 0.5 * yz], -1),
            torch.stack([0.5 * xz, 0.5 * yz, xx_yy_zz[:, 2]], -1),
        ],
        1,
    )
    strained_cell = params.reference @ (eye + symmetric)
    scale = inverse(cell) @ strained_cell
    strained_positions = _per_atom_product(positions, scale, batch_idx)

    is_strain = _is(params, CellFilterKind.STRAIN)
    is_none = _is(params, CellFilterKind.NONE)
    new_cell = torch.where(_per_system(is_strain), strained_cell, deformed_cell)
    new_cell = torch.where(_per_system(is_none), cell, new_cell)
    atoms_strain = segment_broadcast(is_strain, batch_idx).unsqueeze(1)
    atoms_none = segment_broadcast(is_none, batch_idx).unsqueeze(1)
    new_positions = torch.where(atoms_strain, strained_positions, deformed_positions)
    new_positions = torch.where(atoms_none, atom_rows, new_positions)
    new_strain = torch.where(_per_system(is_strain), strain, torch.zeros_like(strain))
    return new_positions, new_cell, new_strain
