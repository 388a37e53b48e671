"""Cubic splines through the images of many bands at once: ASE's ``spline`` and ``string`` NEB methods.

ASE (``ase.optimize.precon.PreconImages`` with the identity preconditioner)
fits, for each band, one cubic spline ``x(s)`` per Cartesian coordinate
through the images' positions, with SciPy's ``CubicSpline`` and its
*not-a-knot* ends. The knots are the reaction coordinate::

    s_0 = 0,   s_j = sum_{l <= j} |t_{l-1}| / sum_l |t_l|        (Eq. A1)

(``t_l`` the minimum-image spring vectors), so the spacing
``h_j = s_{j+1} - s_j`` and the slopes ``m_j = (x_{j+1} - x_j) / h_j`` give SciPy's
tridiagonal system for the first derivatives ``x'_j`` at the knots. From
them (Makri, Ortner & Kermode, J. Chem. Phys. 150, 094109 (2019),
doi:10.1063/1.5064465):

* the tangent of image ``i`` is ``x'(s_i) / |x'(s_i)|`` (Eq. 7);
* its curvature is ``x''(s_i) = 2 c1_i`` with SciPy's piecewise coefficients
  ``t = (x'_i + x'_{i+1} - 2 m_i) / h_i`` and ``c1 = (m_i - x'_i) / h_i - t``
  (the ``spline`` method's spring force, Eq. 9);
* the ``string`` method moves image ``i`` to ``x(i / (n - 1))``.

Bands differ in image count: a band's knots sit in a row of a ``[B, K]``
tensor (``K`` the largest image count; the rows past a band's last image are
identity equations) and its coordinates in a ``[B, K, A * 3]`` right-hand
side (``A`` the largest atom count), so every band's system is one batched
solve. SciPy solves the band matrix by LU (LAPACK ``gbsv``), ASE sums the dot
products in extended precision: the numbers agree to round-off.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class SplineRows(NamedTuple):
    """Where the path rows sit in the padded spline tensors (built once per run)."""

    slot: torch.Tensor
    """``[P]`` each path row's flat index in ``[B, K, A]``."""
    knot: torch.Tensor
    """``[G]`` each path image's flat index in ``[B, K]``."""
    band: torch.Tensor
    """``[P]`` the band of each path row."""
    image: torch.Tensor
    """``[P]`` the path image of each path row."""
    local: torch.Tensor
    """``[P]`` the index in its band of each path row's image."""
    next_rows: torch.Tensor
    """``[P]`` the same atom in the next image (itself on a band's last)."""
    previous_rows: torch.Tensor
    """``[P]`` the same atom in the image before (itself on a band's first)."""
    counts: torch.Tensor
    """``[B]`` each band's number of images (at least 3)."""
    width: int
    """``K``: the largest number of images in a band."""
    atoms: int
    """``A``: the largest number of atoms per image."""


class SplineFit(NamedTuple):
    """Every band's spline (:func:`fit_splines`)."""

    knots: torch.Tensor
    """``[B, K]`` the reaction coordinate ``s`` of each image (1 past a band's last), dimensionless."""
    spacing: torch.Tensor
    """``[B, K]`` ``h_j = s_{j+1} - s_j`` (0 from a band's last image on)."""
    secants: torch.Tensor
    """``[P, 3]`` ``m_j = (x_{j+1} - x_j) / h_j`` on each path row (0 on a band's last image), Å."""
    derivatives: torch.Tensor
    """``[P, 3]`` ``x'(s_j)`` on each path row, Å."""


def _end_scalars(knots: torch.Tensor, spacing: torch.Tensor, count: torch.Tensor) -> list[torch.Tensor]:
    """``[B]`` each: ``h_0, h_1, h_{n-3}, h_{n-2}``, ``s_2 - s_0`` and ``s_{n-1} - s_{n-3}``."""
    end = count.view(-1, 1)

    def at(values: torch.Tensor, offset: int) -> torch.Tensor:
        return values.gather(1, end - offset).view(-1)

    return [
        spacing[:, 0],
        spacing[:, 1],
        at(spacing, 3),
        at(spacing, 2),
        knots[:, 2] - knots[:, 0],
        at(knots, 1) - at(knots, 3),
    ]


def _system(knots: torch.Tensor, spacing: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``[B, K, K]`` SciPy's equations for the knot derivatives (identity rows past a band's end).

    Rows ``1 .. n-2``: ``h_j x'_{j-1} + 2 (h_{j-1} + h_j) x'_j + h_{j-1} x'_{j+1}``;
    the not-a-knot ends ``h_1 x'_0 + (s_2 - s_0) x'_1`` and ``(s_{n-1} - s_{n-3})
    x'_{n-2} + h_{n-3} x'_{n-1}``; with three images SciPy's parabola
    ``x'_0 + x'_1``, ``x'_1 + x'_2``.
    """
    width = knots.shape[1]
    before = torch.cat([torch.zeros_like(spacing[:, :1]), spacing[:, :-1]], dim=1)  # h_{j-1}
    _, h1, h_before_last, _, d_first, d_last = (
        value.view(-1, 1).expand_as(knots) for value in _end_scalars(knots, spacing, count)
    )
    j = torch.arange(width, device=knots.device).view(1, -1)
    n = count.view(-1, 1)
    three, first, last = n == 3, j == 0, j == n - 1
    inner = (j > 0) & (j < n - 1)
    one, zero = torch.ones_like(knots), torch.zeros_like(knots)
    diagonal = torch.where(
        first,
        torch.where(three, one, h1),
        torch.where(inner, 2 * (before + spacing), torch.where(last & ~three, h_before_last, one)),
    )
    upper = torch.where(first, torch.where(three, one, d_first), torch.where(inner, before, zero))
    lower = torch.where(inner, spacing, torch.where(last, torch.where(three, one, d_last), zero))
    return (
        torch.diag_embed(diagonal)
        + torch.diag_embed(upper[:, :-1], offset=1)
        + torch.diag_embed(lower[:, 1:], offset=-1)
    )


def fit_splines(path: torch.Tensor, spring_lengths: torch.Tensor, rows: SplineRows) -> SplineFit:
    """Every band's not-a-knot cubic spline through its images (SciPy's ``CubicSpline``, ASE's knots).

    Parameters
    ----------
    path
        ``[P, 3]`` every image's positions, band after band (raw, as ASE fits them), Å.
    spring_lengths
        ``[G]`` the length of the minimum-image spring after each path image
        (0 after a band's last), Å.
    rows
        The padded layout (:class:`SplineRows`).
    """
    bands, width = rows.counts.shape[0], rows.width
    lengths = torch.zeros(bands * width, dtype=path.dtype, device=path.device)
    lengths = lengths.index_copy(0, rows.knot, spring_lengths).view(bands, width)
    distances = torch.cat([torch.zeros_like(lengths[:, :1]), lengths[:, :-1]], dim=1)
    knots = distances.cumsum(dim=1) / distances.sum(dim=1, keepdim=True)
    spacing = torch.cat([knots[:, 1:] - knots[:, :-1], torch.zeros_like(knots[:, :1])], dim=1)
    row_knot = rows.knot.index_select(0, rows.image)
    h_after = spacing.view(-1).index_select(0, row_knot)[:, None]
    h_before = torch.cat([torch.zeros_like(spacing[:, :1]), spacing[:, :-1]], dim=1)
    h_before = h_before.view(-1).index_select(0, row_knot)[:, None]
    secants = (path.index_select(0, rows.next_rows) - path) / torch.where(
        h_after == 0, torch.ones_like(h_after), h_after
    )
    previous = secants.index_select(0, rows.previous_rows)
    h0, h1, h_before_last, h_last, d_first, d_last = (
        value.index_select(0, rows.band)[:, None] for value in _end_scalars(knots, spacing, rows.counts)
    )
    n = rows.counts.index_select(0, rows.band)[:, None]
    local = rows.local[:, None]
    three = n == 3
    interior = 3 * (h_after * previous + h_before * secants)
    following = secants.index_select(0, rows.next_rows)
    start = torch.where(three, 2 * secants, ((h0 + 2 * d_first) * h1 * secants + h0**2 * following) / d_first)
    earlier = previous.index_select(0, rows.previous_rows)
    end = torch.where(
        three, 2 * previous, (h_last**2 * earlier + (2 * d_last + h_last) * h_before_last * previous) / d_last
    )
    rhs = torch.where(local == 0, start, torch.where(local == n - 1, end, interior))
    padded = torch.zeros(bands * width * rows.atoms, 3, dtype=path.dtype, device=path.device)
    padded = padded.index_copy(0, rows.slot, rhs).view(bands, width, rows.atoms * 3)
    solved, _ = torch.linalg.solve_ex(_system(knots, spacing, rows.counts), padded)  # no error check: no sync
    derivatives = solved.reshape(-1, 3).index_select(0, rows.slot)
    return SplineFit(knots, spacing, secants, derivatives)


def _coefficients(
    fit: SplineFit, rows: torch.Tensor, next_rows: torch.Tensor, spacing: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SciPy's ``c0 = t / h``, ``c1 = (m - x'_j) / h - t`` with ``t = (x'_j + x'_{j+1} - 2 m) / h``."""
    slope, secant = fit.derivatives.index_select(0, rows), fit.secants.index_select(0, rows)
    t = (slope + fit.derivatives.index_select(0, next_rows) - 2 * secant) / spacing
    return t / spacing, (secant - slope) / spacing - t


def knot_derivatives(
    fit: SplineFit, rows: torch.Tensor, next_rows: torch.Tensor, knot: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x'(s_j)``, ``x''(s_j) = 2 c1_j`` on path ``rows`` of interior images (``knot``: ``[B, K]`` index)."""
    spacing = fit.spacing.view(-1).index_select(0, knot)[:, None]
    _, c1 = _coefficients(fit, rows, next_rows, spacing)
    return fit.derivatives.index_select(0, rows), 2 * c1


def spline_values(
    fit: SplineFit,
    path: torch.Tensor,
    targets: torch.Tensor,
    band: torch.Tensor,
    count: torch.Tensor,
    row_image: torch.Tensor,
    first_row: torch.Tensor,
    atom: torch.Tensor,
    natoms: torch.Tensor,
) -> torch.Tensor:
    """``[M, 3]`` the splines at ``targets`` (one reaction coordinate per moving image), Å.

    The piece is SciPy's: the last knot ``s_k <= target``, clamped to the
    band's pieces, evaluated as ``c3 + c2 z + c1 z^2 + c0 z^3`` with ``z =
    target - s_k`` (in that order).

    Parameters
    ----------
    targets, band, count
        ``[I]`` the target coordinate of each moving image, its band, and the
        band's number of images.
    row_image, first_row, atom, natoms
        ``[M]`` each moving row's image (index into ``targets``), the path row
        of its band's first atom, its atom index, and its band's atoms per image.
    """
    knots = fit.knots.index_select(0, band)
    below = (knots <= targets[:, None]).sum(dim=1) - 1
    piece = below.clamp(min=0).minimum(count - 2).view(-1, 1)
    start = knots.gather(1, piece).view(-1)
    spacing = fit.spacing.index_select(0, band).gather(1, piece).view(-1)
    rows = first_row + piece.view(-1).index_select(0, row_image) * natoms + atom
    c0, c1 = _coefficients(fit, rows, rows + natoms, spacing.index_select(0, row_image)[:, None])
    z = (targets - start).index_select(0, row_image)[:, None]
    c3, c2 = path.index_select(0, rows), fit.derivatives.index_select(0, rows)
    return c3 + c2 * z + c1 * (z * z) + c0 * (z * z * z)
