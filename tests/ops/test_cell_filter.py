"""The cell-filter maps against ``ase.filters`` (3.29) on one strained, rattled EMT copper cell."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.filters import ExpCellFilter, FrechetCellFilter, StrainFilter, UnitCellFilter
from ase.stress import voigt_6_to_full_3x3_stress

from nvalchemi_ase.ops.cell_filter import (
    CellFilterKind,
    CellFilterParameters,
    filter_energy,
    generalized_forces,
    generalized_positions,
    move,
    row_layout,
)
from nvalchemi_ase.ops.cell_matrix import expm_frechet, logm
from tests.tolerances import CELL_FILTER_ATOL

CASES = [
    (UnitCellFilter, {}),
    (FrechetCellFilter, {}),
    (ExpCellFilter, {}),
    (StrainFilter, {}),
    (StrainFilter, {"mask": [1, 0, 1, 1, 0, 1]}),
    (FrechetCellFilter, {"scalar_pressure": 0.01, "mask": [1, 1, 0, 1, 0, 1]}),
    (UnitCellFilter, {"hydrostatic_strain": True, "scalar_pressure": 0.02}),
    (UnitCellFilter, {"constant_volume": True, "cell_factor": 3.0}),
    (FrechetCellFilter, {"constant_volume": True, "exp_cell_factor": 2.5}),
    (ExpCellFilter, {"hydrostatic_strain": True, "scalar_pressure": -0.01}),
]
KINDS = {
    UnitCellFilter: CellFilterKind.UNIT,
    FrechetCellFilter: CellFilterKind.FRECHET,
    ExpCellFilter: CellFilterKind.EXP,
    StrainFilter: CellFilterKind.STRAIN,
}


def _tensor(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=float))


def _strained_copper():
    atoms = bulk("Cu", cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.05, seed=1)
    strain = np.eye(3) + 0.03 * np.random.default_rng(2).standard_normal((3, 3))
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    atoms.calc = EMT()
    return atoms


def _parameters(filt, reference) -> CellFilterParameters:
    if isinstance(filt, StrainFilter):
        mask = np.zeros((3, 3))
        mask[:2] = np.asarray(filt.mask, dtype=float).reshape(2, 3)
        factors, pressure, hydrostatic, constant = (1.0, 1.0), 0.0, False, False
    else:
        mask = np.asarray(filt.mask, dtype=float)
        factors = (filt.cell_factor, getattr(filt, "exp_cell_factor", 1.0))
        pressure, hydrostatic, constant = filt.scalar_pressure, filt.hydrostatic_strain, filt.constant_volume
    return CellFilterParameters(
        torch.tensor([int(KINDS[type(filt)])]),
        _tensor(reference)[None],
        _tensor(mask)[None],
        _tensor([factors[0]]),
        _tensor([factors[1]]),
        _tensor([pressure]),
        torch.tensor([hydrostatic]),
        torch.tensor([constant]),
    )


def _rows(filt, atom_rows, cell_rows) -> np.ndarray:
    if isinstance(filt, StrainFilter):
        return cell_rows[0, :2].numpy()
    return np.concatenate([atom_rows.numpy(), cell_rows[0].numpy()])


@pytest.mark.parametrize(("cls", "options"), CASES)
def test_maps_equal_ase_filters(cls, options) -> None:
    atoms = _strained_copper()
    reference = atoms.cell.array.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        filt = cls(atoms, **options)
    deform = np.eye(3) + 0.02 * np.random.default_rng(3).standard_normal((3, 3))
    atoms.set_cell(atoms.cell @ deform, scale_atoms=True)
    strain = torch.zeros((1, 3, 3), dtype=torch.float64)
    if isinstance(filt, StrainFilter):
        filt.set_positions(np.array([[0.01, -0.02, 0.005], [0.01, 0.0, -0.01]]))
        strain[0, :2] = _tensor(filt.strain.reshape(2, 3))
    params = _parameters(filt, reference)
    n = len(atoms)
    batch_idx, counts, cell = torch.zeros(n, dtype=torch.long), torch.tensor([n]), _tensor(atoms.cell)[None]

    atom_rows, cell_rows = generalized_positions(
        _tensor(atoms.positions), cell, strain, params, batch_idx, counts
    )
    np.testing.assert_allclose(_rows(filt, atom_rows, cell_rows), filt.get_positions(), atol=CELL_FILTER_ATOL)

    stress = _tensor(voigt_6_to_full_3x3_stress(atoms.get_stress()))[None]
    atom_forces, cell_forces = generalized_forces(
        _tensor(atoms.get_forces()), stress, cell, params, batch_idx
    )
    np.testing.assert_allclose(
        _rows(filt, atom_forces, cell_forces), filt.get_forces(), atol=CELL_FILTER_ATOL
    )

    energy = filter_energy(_tensor([atoms.get_potential_energy()]), cell, params)
    assert float(energy[0]) == pytest.approx(filt.get_potential_energy(), abs=CELL_FILTER_ATOL)

    target = filt.get_positions() + 0.01 * np.random.default_rng(5).standard_normal(
        filt.get_positions().shape
    )
    if isinstance(filt, StrainFilter):
        new_atoms, new_cells = _tensor(atoms.positions), torch.zeros((1, 3, 3), dtype=torch.float64)
        new_cells[0, :2] = _tensor(target)
    else:
        new_atoms, new_cells = _tensor(target[:n]), _tensor(target[n:])[None]
    positions, new_cell, _ = move(new_atoms, new_cells, _tensor(atoms.positions), cell, params, batch_idx)
    filt.set_positions(target)
    np.testing.assert_allclose(positions.numpy(), atoms.positions, atol=CELL_FILTER_ATOL)
    np.testing.assert_allclose(new_cell[0].numpy(), atoms.cell.array, atol=CELL_FILTER_ATOL)


def test_none_kind_leaves_atoms_as_they_are() -> None:
    positions = torch.randn(5, 3, dtype=torch.float64)
    cell = 4.0 * torch.eye(3, dtype=torch.float64)[None]
    params = CellFilterParameters(
        torch.tensor([0]),
        cell,
        torch.ones_like(cell),
        *(torch.ones(1, dtype=torch.float64),) * 3,
        torch.tensor([False]),
        torch.tensor([False]),
    )
    batch_idx = torch.zeros(5, dtype=torch.long)
    rows, cells = generalized_positions(
        positions, cell, torch.zeros_like(cell), params, batch_idx, torch.tensor([5])
    )
    assert torch.equal(rows, positions) and torch.equal(cells, torch.zeros_like(cells))
    moved, same_cell, _ = move(rows + 1.0, cells + 1.0, positions, cell, params, batch_idx)
    assert torch.equal(moved, positions + 1.0) and torch.equal(same_cell, cell)


def test_matrix_log_and_frechet_derivative_equal_scipy() -> None:
    rng = np.random.default_rng(0)
    matrices = np.eye(3) + 0.3 * rng.standard_normal((20, 3, 3))
    logs = logm(_tensor(matrices)).numpy()
    for matrix, log in zip(matrices, logs, strict=True):
        np.testing.assert_allclose(log, scipy.linalg.logm(matrix), atol=1e-12)
    exponents, directions = 0.2 * rng.standard_normal((20, 3, 3)), rng.standard_normal((20, 3, 3))
    derivatives = expm_frechet(_tensor(exponents), _tensor(directions)).numpy()
    for a, e, d in zip(exponents, directions, derivatives, strict=True):
        np.testing.assert_allclose(d, scipy.linalg.expm_frechet(a, e, compute_expm=False), atol=1e-12)


def test_row_layout_puts_each_systems_cell_rows_after_its_atoms() -> None:
    batch_idx = torch.tensor([0, 0, 1, 2, 2, 2])
    ptr = torch.tensor([0, 2, 3, 6])
    layout = row_layout(batch_idx, ptr)
    assert layout.ptr.tolist() == [0, 5, 9, 15]
    assert layout.batch_idx.tolist() == [0] * 5 + [1] * 4 + [2] * 6
    atoms, cells = torch.arange(6.0).unsqueeze(1), -torch.arange(9.0).view(3, 3, 1)
    joined = layout.join(atoms, cells)
    assert joined[:, 0].tolist() == [0, 1, 0, -1, -2, 2, -3, -4, -5, 3, 4, 5, -6, -7, -8]
    back_atoms, back_cells = layout.split(joined)
    assert torch.equal(back_atoms, atoms) and torch.equal(back_cells, cells)
