"""``ops.neb_spline`` against SciPy's ``CubicSpline`` (what ASE's spline and string NEB methods fit)."""

from __future__ import annotations

import numpy as np
import torch
from scipy.interpolate import CubicSpline

from nvalchemi_ase.ops.neb_spline import SplineRows, fit_splines, knot_derivatives, spline_values

SPLINE_ATOL = 1e-12
"""Derivatives, curvatures and values of splines through coordinates of a few Å (LU vs banded LU)."""


def _bands(shapes, seed=0):
    """Random ragged bands (``(images, atoms)`` each), their padded layout and the flat path."""
    rng = np.random.default_rng(seed)
    width, atoms = max(n for n, _ in shapes), max(a for _, a in shapes)
    paths, slot, knot, band, image, local, following, previous = [], [], [], [], [], [], [], []
    row = first = 0
    for b, (n, a) in enumerate(shapes):
        paths.append(np.cumsum(rng.uniform(0.1, 1.0, size=(n, a, 3)), axis=0).reshape(-1, 3))
        for j in range(n):
            knot.append(b * width + j)
            for atom in range(a):
                slot.append((b * width + j) * atoms + atom)
                band.append(b)
                image.append(first + j)
                local.append(j)
                following.append(row + min(j + 1, n - 1) * a + atom)
                previous.append(row + max(j - 1, 0) * a + atom)
        row, first = row + n * a, first + n
    tensor = torch.as_tensor
    rows = SplineRows(
        *(tensor(v) for v in (slot, knot, band, image, local, following, previous)),
        counts=tensor([n for n, _ in shapes]),
        width=width,
        atoms=atoms,
    )
    return paths, rows, tensor(np.concatenate(paths))


def test_ragged_bands_fit_scipys_not_a_knot_splines() -> None:
    """Bands of 3 (SciPy's parabola), 4, 5 and 7 images at once: each equals its own CubicSpline."""
    shapes = [(3, 2), (5, 4), (7, 3), (4, 1)]
    paths, rows, path = _bands(shapes)
    springs = path.index_select(0, rows.next_rows) - path
    lengths = torch.zeros(int(rows.knot.shape[0]), dtype=path.dtype)
    lengths = lengths.index_add(0, rows.image, (springs * springs).sum(dim=1)).sqrt()
    fit = fit_splines(path, lengths, rows)
    start = 0
    for b, (n, a) in enumerate(shapes):
        x = paths[b].reshape(n, -1)
        distances = np.zeros(n)
        distances[1:] = np.linalg.norm(np.diff(x, axis=0), axis=1)
        s = distances.cumsum() / distances.sum()
        spline = CubicSpline(s, x, bc_type="not-a-knot")
        np.testing.assert_allclose(fit.knots[b, :n].numpy(), s, rtol=0, atol=1e-15)
        derivatives = fit.derivatives[start : start + n * a].numpy().reshape(n, -1)
        np.testing.assert_allclose(derivatives, spline.derivative()(s), rtol=0, atol=SPLINE_ATOL)
        interior = torch.arange(start + a, start + (n - 1) * a)
        knots = torch.as_tensor([b * rows.width + j for j in range(1, n - 1) for _ in range(a)])
        first, second = knot_derivatives(fit, interior, rows.next_rows[interior], knots)
        np.testing.assert_allclose(
            first.numpy().reshape(n - 2, -1), spline.derivative()(s[1:-1]), rtol=0, atol=SPLINE_ATOL
        )
        np.testing.assert_allclose(
            second.numpy().reshape(n - 2, -1), spline.derivative(2)(s[1:-1]), rtol=0, atol=SPLINE_ATOL
        )
        targets = np.linspace(0.0, 1.0, n)[1:-1]
        moving = (n - 2) * a
        values = spline_values(
            fit,
            path,
            torch.as_tensor(targets),
            torch.full((n - 2,), b),
            torch.full((n - 2,), n),
            torch.arange(n - 2).repeat_interleave(a),
            torch.full((moving,), start),
            torch.arange(a).repeat(n - 2),
            torch.full((moving,), a),
        )
        np.testing.assert_allclose(
            values.numpy().reshape(n - 2, -1), spline(targets), rtol=0, atol=SPLINE_ATOL
        )
        start += n * a
