"""The ``spline`` and ``string`` NEB methods of a batch of bands: ASE's spline fits, on the device.

ASE's ``NEB.get_forces()`` with ``method='spline'`` or ``'string'`` takes the
tangent of each image from a cubic spline through the band
(``PreconImages.get_tangent``), and ``'spline'`` adds the spring force
``k (x'' . tau) tau`` with ``k = (k_{i-1} + k_i) / 2 / n^2``
(``PreconImages.get_spring_force``, Makri, Ortner & Kermode, J. Chem. Phys.
150, 094109 (2019), doi:10.1063/1.5064465, Eq. 9). ``'string'`` instead
moves the images to equal spacing along the spline each time the optimizer
sets positions (``StringMethod.adjust_positions``).

ASE keeps the last fit of each band and reuses it while no knot and no
coordinate moved by 1e-6 or more (``PreconImages.spline``); :class:`BandSplines`
keeps the same per-band cache, so the numbers stay ASE's near convergence.
Only the identity preconditioner (``precon=None``) is reproduced.
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.ops.neb import SPLINE, STRING
from nvalchemi_ase.ops.neb_spline import SplineRows, fit_splines, knot_derivatives, spline_values
from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, segment_sum, xyz_sum

__all__ = ["BandSplines"]

SPLINE_REUSE = 1e-6
"""ASE reuses a band's last spline while its knots and coordinates moved less than this (Å)."""


class BandSplines:
    """Spline tangents, curvatures and string placement for the spline-method bands of a layout.

    Parameters
    ----------
    layout
        The bands' :class:`~nvalchemi_ase.models.band.BandLayout` (device).
    image_of_row
        ``[M]`` the moving image of each moving row.
    """

    def __init__(self, layout: Any, image_of_row: torch.Tensor) -> None:
        self.layout = layout
        self.image_of_row = image_of_row
        counts = layout.image_count
        self.rows = SplineRows(
            slot=layout.spline_slot,
            knot=layout.knot,
            band=layout.path_band,
            image=layout.path_image,
            local=layout.path_local,
            next_rows=layout.next_rows,
            previous_rows=layout.previous_path_rows,
            counts=counts,
            width=int(counts.max()),
            atoms=int(layout.natoms.max()) if layout.natoms.numel() else 1,
        )
        band_method = layout.method
        self.spline_band = (band_method == SPLINE) | (band_method == STRING)
        self.string_band = (band_method == STRING) & ~layout.dynamic  # DyNEB's placement skips it (as ASE)
        self.any_string = bool(self.string_band.any())
        self._moving_next = layout.next_rows.index_select(0, layout.moving_rows)
        self._moving_knot = layout.knot.index_select(0, layout.path_image.index_select(0, layout.moving_rows))
        self._row_band = segment_broadcast(layout.image_band, image_of_row)
        self._fitted = torch.zeros_like(self.spline_band)
        self._knots: torch.Tensor | None = None
        self._path: torch.Tensor | None = None
        self._derivative: torch.Tensor | None = None
        self._curvature: torch.Tensor | None = None

    def tangents(
        self, path: torch.Tensor, lengths: torch.Tensor, k_previous: torch.Tensor, k_next: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[M, 3]`` unit tangents ``x' / |x'|`` and ``[I]`` the spring coefficients ``k (x'' . tau)``.

        ``path`` ``[P, 3]`` all images, ``lengths`` ``[G]`` the springs'
        lengths, ``k_previous`` / ``k_next`` ``[I]`` each image's spring constants.
        """
        layout, images = self.layout, k_previous.shape[0]
        fit = fit_splines(path, lengths, self.rows)
        derivative, curvature = knot_derivatives(
            fit, layout.moving_rows, self._moving_next, self._moving_knot
        )
        derivative, curvature = self._reuse(fit.knots, path, derivative, curvature)
        norm = torch.sqrt(segment_sum(xyz_sum(derivative * derivative), self.image_of_row, images))
        tangent = derivative / segment_broadcast(norm, self.image_of_row)[:, None]
        count = layout.image_count.index_select(0, layout.image_band).to(path.dtype)
        k = 0.5 * (k_previous + k_next) / (count * count)
        bend = segment_sum(xyz_sum(curvature * tangent), self.image_of_row, images)
        return tangent, k * bend

    def _reuse(
        self, knots: torch.Tensor, path: torch.Tensor, derivative: torch.Tensor, curvature: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """ASE's spline cache: a band whose knots and images moved less than 1e-6 keeps its last fit."""
        layout = self.layout
        if self._knots is None or self._path is None or self._derivative is None or self._curvature is None:
            reuse = self._fitted
        else:
            knots_moved = (knots - self._knots).abs().amax(dim=1)
            path_moved = segment_max((path - self._path).abs().amax(dim=1), layout.path_band, layout.bands)
            reuse = self._fitted & (knots_moved < SPLINE_REUSE) & (path_moved < SPLINE_REUSE)
            row_reuse = segment_broadcast(reuse, self._row_band)[:, None]
            derivative = torch.where(row_reuse, self._derivative, derivative)
            curvature = torch.where(row_reuse, self._curvature, curvature)
            knots = torch.where(reuse[:, None], self._knots, knots)
            path = torch.where(segment_broadcast(reuse, layout.path_band)[:, None], self._path, path)
        self._knots, self._path, self._derivative, self._curvature = knots, path, derivative, curvature
        self._fitted = torch.ones_like(self._fitted)
        return derivative, curvature

    def string_positions(
        self, path: torch.Tensor, lengths: torch.Tensor, positions: torch.Tensor
    ) -> torch.Tensor:
        """``[M, 3]`` the ``string`` bands' images moved to ``s = i / (n - 1)`` on their spline."""
        layout = self.layout
        fit = fit_splines(path, lengths, self.rows)
        count = layout.image_count.index_select(0, layout.image_band)
        moved = spline_values(
            fit,
            path,
            layout.string_target,
            layout.image_band,
            count,
            self.image_of_row,
            layout.first_row,
            layout.atom,
            layout.natoms,
        )
        string_rows = segment_broadcast(self.string_band, self._row_band)[:, None]
        return torch.where(string_rows, moved, positions)
