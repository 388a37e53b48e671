"""``ops.neb.minimum_image`` against ASE's ``find_mic`` in oblique and partly periodic cells."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.geometry import find_mic

from nvalchemi_ase._lookalike.band_layout import mic_cell
from nvalchemi_ase.ops.neb import minimum_image, neighbour_shifts


@pytest.mark.parametrize(
    "pbc", [(True, True, True), (True, True, False), (False, True, True), (True, False, False), (False,) * 3]
)
def test_minimum_image_is_ases(pbc) -> None:
    rng = np.random.default_rng(0)
    cell = np.array([[4.0, 0.0, 0.0], [3.1, 3.5, 0.0], [1.0, -2.2, 5.0]])
    displacements = rng.uniform(-9.0, 9.0, size=(200, 3))
    expected, _ = find_mic(displacements, cell, pbc)
    reduced, inverse = mic_cell(cell, pbc)
    rows = len(displacements)

    def per_row(matrix):
        return torch.as_tensor(matrix).expand(rows, 3, 3)

    result = minimum_image(
        torch.as_tensor(displacements),
        per_row(reduced),
        per_row(inverse),
        torch.as_tensor(np.asarray(pbc, dtype=float)).expand(rows, 3),
        neighbour_shifts(torch.device("cpu"), torch.float64),
    )
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=1e-12)


def test_orthogonal_cells_need_no_search() -> None:
    rng = np.random.default_rng(1)
    cell, pbc = np.diag([4.0, 5.0, 20.0]), (True, True, False)
    displacements = rng.uniform(-9.0, 9.0, size=(200, 3))
    expected, _ = find_mic(displacements, cell, pbc)
    rows = len(displacements)
    result = minimum_image(
        torch.as_tensor(displacements),
        torch.as_tensor(cell).expand(rows, 3, 3),
        torch.as_tensor(np.linalg.inv(cell)).expand(rows, 3, 3),
        torch.as_tensor(np.asarray(pbc, dtype=float)).expand(rows, 3),
        None,
    )
    np.testing.assert_allclose(result.numpy(), expected, rtol=0, atol=1e-12)
