"""Nudged elastic band forces for many bands at once, as pure tensor functions.

A band is a path of images ``0 .. n-1`` (the two ends fixed). Spring ``j``
joins image ``j`` to image ``j+1``; its vector ``t_j`` is the minimum-image
displacement and ``|t_j|`` its length. Each moving image ``i`` gets a tangent
``tau_i`` built from ``t_{i-1}`` and ``t_i`` and the force

    F_NEB = F - (F . tau) tau + (spring force along tau)        (nudged)
    F_NEB = F - 2 (F . tau) tau                                 (climbing image)

with the three tangent and spring choices of ASE's ``ase.mep.neb``:

* ``aseneb`` (code 0): the tangent is the spring towards the highest image,
  unnormalised; both projections divide by ``|tau|^2``.
* ``improvedtangent`` (code 1): Henkelman & Jonsson, J. Chem. Phys. 113,
  9978 (2000), doi:10.1063/1.1323224, Eqs. 8-12.
* ``eb`` (code 2): full spring forces towards an equal spacing, Kolsbjerg,
  Groves & Hammer, J. Chem. Phys. 145, 094107 (2016), doi:10.1063/1.4961868,
  Eqs. C1-C8; the climbing image is Henkelman, Uberuaga & Jonsson, J. Chem.
  Phys. 113, 9901 (2000), doi:10.1063/1.1329672, Eq. 5.
* ``spline`` (code 3) and ``string`` (code 4): the unit tangent of a cubic
  spline through the band (:mod:`nvalchemi_ase.ops.neb_spline`), given to
  :func:`band_forces` with ``spline``'s spring coefficient ``k (x'' . tau)``
  (0 for ``string``, whose springs are the reparametrisation); Makri, Ortner
  & Kermode, J. Chem. Phys. 150, 094109 (2019), doi:10.1063/1.5064465, Eqs. 6-9.

Every image-level quantity is a ``[I]`` tensor and every vector a ``[M, 3]``
row tensor (``image_of_row[M]`` maps rows to images), so any number of bands
of any sizes is one set of scatters: no Python loop over bands or images and
no host sync.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, segment_sum, xyz_sum

ASENEB, IMPROVED_TANGENT, FULL_SPRING, SPLINE, STRING = 0, 1, 2, 3, 4
METHOD_CODES = {
    "aseneb": ASENEB,
    "improvedtangent": IMPROVED_TANGENT,
    "eb": FULL_SPRING,
    "spline": SPLINE,
    "string": STRING,
}

_SHIFTS = list(itertools.product((-1.0, 0.0, 1.0), repeat=3))


def minimum_image(
    displacements: torch.Tensor,
    cell: torch.Tensor,
    inverse_cell: torch.Tensor,
    pbc: torch.Tensor,
    shifts: torch.Tensor | None,
) -> torch.Tensor:
    """The shortest periodic image of each displacement, Å.

    Parameters
    ----------
    displacements
        ``[P, 3]`` Cartesian displacements, Å.
    cell, inverse_cell
        ``[P, 3, 3]`` each row's (Minkowski-reduced, completed) cell, rows are
        lattice vectors, and its inverse.
    pbc
        ``[P, 3]`` 1.0 along periodic directions, 0.0 elsewhere (no shift there).
    shifts
        :func:`neighbour_shifts`: ASE's ``general_find_mic``, the periodic
        fractional coordinates wrapped into ``[0, 1)`` and the shortest of the
        27 neighbouring images taken. ``None`` when every cell is orthogonal:
        each fractional coordinate is rounded to the nearest, which is exact.
    """
    fractional = torch.einsum("pi,pij->pj", displacements, inverse_cell)
    if shifts is None:
        wrap = -torch.round(fractional) * pbc
        return displacements + torch.einsum("pi,pij->pj", wrap, cell)
    wrap = -torch.floor(fractional) * pbc
    candidates = wrap[:, None, :] + shifts[None, :, :] * pbc[:, None, :]
    vectors = displacements[:, None, :] + torch.einsum("pki,pij->pkj", candidates, cell)
    best = (vectors * vectors).sum(dim=2).argmin(dim=1)
    return vectors.gather(1, best.view(-1, 1, 1).expand(-1, 1, 3)).squeeze(1)


def neighbour_shifts(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[27, 3]`` the lattice shifts -1, 0, 1 along each vector (made once, outside the step)."""
    return torch.tensor(_SHIFTS, dtype=dtype, device=device)


def highest_images(
    energies: torch.Tensor, band: torch.Tensor, local: torch.Tensor, bands: int
) -> torch.Tensor:
    """``[B]`` each band's highest moving image: its index in the band, the last of equals (ASE's argsort).

    ``energies``, ``band`` and ``local`` are ``[I]`` over the moving images.
    """
    highest = segment_broadcast(segment_max(energies, band, bands), band)
    candidates = torch.where(energies == highest, local, torch.full_like(local, -1))
    return segment_max(candidates, band, bands)


class ImageTerms(NamedTuple):
    """Per moving image ``[I]``: the springs around it and the band's state."""

    energy_previous: torch.Tensor
    energy: torch.Tensor
    energy_next: torch.Tensor
    length_previous: torch.Tensor
    length_next: torch.Tensor
    k_previous: torch.Tensor
    k_next: torch.Tensor
    local: torch.Tensor
    highest: torch.Tensor
    climb: torch.Tensor
    method: torch.Tensor
    eqlength: torch.Tensor


def _tangent_weights(terms: ImageTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """``tau_raw = c1 t_{i-1} + c2 t_i``: the weights ``(c1, c2)`` per image."""
    up = terms.energy_next - terms.energy
    down = terms.energy_previous - terms.energy
    dv_max, dv_min = torch.maximum(up.abs(), down.abs()), torch.minimum(up.abs(), down.abs())
    rising = (terms.energy_next > terms.energy) & (terms.energy > terms.energy_previous)
    falling = (terms.energy_next < terms.energy) & (terms.energy < terms.energy_previous)
    next_higher = terms.energy_next > terms.energy_previous
    one, zero = torch.ones_like(up), torch.zeros_like(up)
    improved_1 = torch.where(
        rising, zero, torch.where(falling, one, torch.where(next_higher, dv_min, dv_max))
    )
    improved_2 = torch.where(
        rising, one, torch.where(falling, zero, torch.where(next_higher, dv_max, dv_min))
    )
    aseneb_1 = (terms.local >= terms.highest).to(up.dtype)
    aseneb_2 = (terms.local <= terms.highest).to(up.dtype)
    eb_1, eb_2 = 1.0 / terms.length_previous, 1.0 / terms.length_next
    method = terms.method
    c1 = torch.where(method == ASENEB, aseneb_1, torch.where(method == IMPROVED_TANGENT, improved_1, eb_1))
    c2 = torch.where(method == ASENEB, aseneb_2, torch.where(method == IMPROVED_TANGENT, improved_2, eb_2))
    return c1, c2


def band_forces(
    forces: torch.Tensor,
    t_previous: torch.Tensor,
    t_next: torch.Tensor,
    image_of_row: torch.Tensor,
    terms: ImageTerms,
    spline: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``[M, 3]`` NEB forces on the moving images' atoms, eV/Å.

    Parameters
    ----------
    forces
        ``[M, 3]`` the images' (constrained) forces, eV/Å.
    t_previous, t_next
        ``[M, 3]`` each atom's rows of the springs before and after its image, Å.
    image_of_row
        ``[M]`` the moving image of each row.
    terms
        The per-image scalars (:class:`ImageTerms`).
    spline
        For bands of the ``spline`` / ``string`` methods: ``[M, 3]`` unit
        tangents and ``[I]`` spring coefficients ``k (x'' . tau)``, eV/Å
        (other images ignore them).
    """
    images = terms.energy.shape[0]

    def per_image(rows: torch.Tensor) -> torch.Tensor:
        return segment_sum(xyz_sum(rows), image_of_row, images)

    def rows(values: torch.Tensor) -> torch.Tensor:
        return segment_broadcast(values, image_of_row)[:, None]

    c1, c2 = _tangent_weights(terms)
    raw = rows(c1) * t_previous + rows(c2) * t_next
    squared = per_image(raw * raw)
    aseneb = terms.method == ASENEB
    norm = torch.sqrt(squared)
    unit = torch.where(terms.method == FULL_SPRING, norm, torch.where(norm > 0, norm, torch.ones_like(norm)))
    scale = torch.where(aseneb, torch.ones_like(norm), 1.0 / unit)
    tangent = rows(scale) * raw
    splined = (terms.method == SPLINE) | (terms.method == STRING)
    if spline is not None:
        tangent = torch.where(rows(splined), spline[0], tangent)
    magnitude = torch.where(aseneb, torch.where(squared == 0, torch.ones_like(squared), squared), 1.0)
    along = per_image(forces * tangent)
    climbing = terms.climb & (terms.local == terms.highest)

    spring_along = terms.length_next * terms.k_next - terms.length_previous * terms.k_previous
    aseneb_spring = terms.k_previous * per_image(t_previous * tangent) - terms.k_next * per_image(
        t_next * tangent
    )
    alpha = torch.where(
        aseneb,
        -(along + aseneb_spring) / magnitude,
        torch.where(terms.method == IMPROVED_TANGENT, spring_along - along, -along),
    )
    if spline is not None:
        bend = torch.where(terms.method == SPLINE, spline[1], torch.zeros_like(along))
        alpha = torch.where(splined, bend - along, alpha)
    alpha = torch.where(climbing, -2.0 * along / torch.where(aseneb, squared, 1.0), alpha)
    beta_1, beta_2 = _full_springs(terms)
    full = (terms.method == FULL_SPRING) & ~climbing
    beta_1 = torch.where(full, beta_1, torch.zeros_like(beta_1))
    beta_2 = torch.where(full, beta_2, torch.zeros_like(beta_2))
    return forces + rows(alpha) * tangent + rows(beta_1) * t_previous + rows(beta_2) * t_next


def _full_springs(terms: ImageTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """``eb``'s spring forces ``beta_1 t_{i-1} + beta_2 t_i`` (Eqs. C1, C5-C7).

    Damped by ``dV_min / dV_max`` beside a climbing image, as ASE.
    """
    up = (terms.energy_next - terms.energy).abs()
    down = (terms.energy_previous - terms.energy).abs()
    beside = terms.climb & ((terms.local - terms.highest).abs() == 1)
    damping = torch.where(beside, torch.minimum(up, down) / torch.maximum(up, down), torch.ones_like(up))
    beta_1 = -(terms.length_previous - terms.eqlength) / terms.length_previous * terms.k_previous * damping
    beta_2 = (terms.length_next - terms.eqlength) / terms.length_next * terms.k_next * damping
    return beta_1, beta_2


def image_max_force(forces: torch.Tensor, image_of_row: torch.Tensor, images: int) -> torch.Tensor:
    """``[I]`` the largest atomic force norm of each image, eV/Å."""
    return segment_max(torch.linalg.vector_norm(forces, dim=1), image_of_row, images)


def kabsch_rotations(
    moving: torch.Tensor, target: torch.Tensor, group: torch.Tensor, groups: int
) -> torch.Tensor:
    """``[G, 3, 3]`` the rotations taking each group of centred ``moving[R, 3]`` rows closest to ``target``.

    The quaternion method of ASE's ``rotation_matrix_from_points`` (Melander
    et al., J. Chem. Theory Comput. 11, 1055 (2015), doi:10.1021/ct501155k):
    the eigenvector of the largest eigenvalue of a 4x4 matrix built from the
    correlation ``M[a, b] = sum p_a p0_b``.
    """
    m = segment_sum(moving[:, :, None] * target[:, None, :], group, groups)
    r11, r22, r33 = m[:, 0, 0], m[:, 1, 1], m[:, 2, 2]
    r12, r23, r31 = m[:, 0, 1], m[:, 1, 2], m[:, 2, 0]
    r13, r21, r32 = m[:, 0, 2], m[:, 1, 0], m[:, 2, 1]
    f = torch.stack(
        [
            torch.stack([r11 + r22 + r33, r23 - r32, r31 - r13, r12 - r21], dim=1),
            torch.stack([r23 - r32, r11 - r22 - r33, r12 + r21, r13 + r31], dim=1),
            torch.stack([r31 - r13, r12 + r21, -r11 + r22 - r33, r23 + r32], dim=1),
            torch.stack([r12 - r21, r13 + r31, r23 + r32, -r11 - r22 + r33], dim=1),
        ],
        dim=1,
    )
    _, vectors = torch.linalg.eigh(f)
    q0, q1, q2, q3 = vectors[:, :, -1].unbind(dim=1)
    return torch.stack(
        [
            torch.stack(
                [q0**2 + q1**2 - q2**2 - q3**2, 2 * (q1 * q2 - q0 * q3), 2 * (q1 * q3 + q0 * q2)], dim=1
            ),
            torch.stack(
                [2 * (q1 * q2 + q0 * q3), q0**2 - q1**2 + q2**2 - q3**2, 2 * (q2 * q3 - q0 * q1)], dim=1
            ),
            torch.stack(
                [2 * (q1 * q3 - q0 * q2), 2 * (q2 * q3 + q0 * q1), q0**2 - q1**2 - q2**2 + q3**2], dim=1
            ),
        ],
        dim=1,
    )
