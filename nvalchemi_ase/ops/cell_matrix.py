"""Cell math, per system: volumes, virials, deformation gradients, matrix log/exp and their derivative.

Everything here works on stacks of 3×3 matrices ``[B, 3, 3]`` (cells have
lattice vectors as rows, as ASE) and never leaves the device: no host sync,
no Python branch on a tensor value. Variable-cell optimizers (ASE's cell
filters, :mod:`nvalchemi_ase.ops.cell_filter`) and constant-pressure MD build
on these.

* ``F = (C₀⁻¹ C)ᵀ`` is the deformation gradient taking the reference cell
  ``C₀`` to ``C`` (``C = C₀ Fᵀ``; positions map as ``r = s Fᵀ``).
* The virial is ``W = −V (σ + p I)`` with σ the stress (eV/Å³, ASE's sign) and
  ``p`` an applied scalar pressure: the generalized force on the cell.
* ``L(A, E) = d/dt exp(A + tE)|₀`` is the Fréchet derivative of the matrix
  exponential, read off ``exp([[A, E], [0, A]])``; its adjoint is
  ``⟨L(A, E), G⟩ = ⟨E, L(Aᵀ, G)⟩``.

Reference: E. B. Tadmor, G. S. Smith, N. Bernstein and E. Kaxiras, Phys. Rev.
B 59, 235 (1999), doi:10.1103/PhysRevB.59.235; A. H. Al-Mohy and N. J. Higham,
SIAM J. Matrix Anal. Appl. 30, 1639 (2009), doi:10.1137/080716426.
"""

from __future__ import annotations

import torch

__all__ = [
    "VOIGT_PAIRS",
    "deformation_gradient",
    "expm",
    "expm_frechet",
    "full_to_voigt",
    "inverse",
    "logm",
    "sqrtm",
    "virial",
    "voigt_to_full",
    "volume",
]

VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))
"""The 3x3 components of ASE's Voigt order xx, yy, zz, yz, xz, xy."""

_SQRT_ROOTS = 5
"""Square roots taken before the log series: |F - I| <~ 0.5 becomes <~ 0.016."""
_SQRT_ITERATIONS = 7
"""Denman-Beavers iterations per root (quadratic convergence, fixed count: no sync)."""
_LOG_TERMS = 8
"""Terms of the series log Y = 2 Σ Z^(2k+1)/(2k+1), Z = (Y - I)(Y + I)^-1."""
_EXP_SQUARINGS = 6
"""Squarings of the matrix exponential (its argument scaled by 2^-6 first)."""
_EXP_TERMS = 14
"""Taylor terms of the scaled exponential."""


def volume(cell: torch.Tensor) -> torch.Tensor:
    """``[B]`` the volume of each cell ``[B, 3, 3]`` (Å³, positive for right-handed cells)."""
    return (torch.linalg.cross(cell[:, 0], cell[:, 1], dim=-1) * cell[:, 2]).sum(-1)


def virial(stress: torch.Tensor, cell: torch.Tensor, pressure: torch.Tensor | float = 0.0) -> torch.Tensor:
    """``[B, 3, 3]`` ``−V (σ + p I)``: stress ``[B, 3, 3]`` eV/Å³, pressure ``[B]`` or a float, eV/Å³."""
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    p = torch.as_tensor(pressure, dtype=cell.dtype, device=cell.device).reshape(-1, 1, 1)
    return -volume(cell).reshape(-1, 1, 1) * (stress + p * eye)


def deformation_gradient(reference: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` ``F = (C₀⁻¹ C)ᵀ`` (ASE's ``np.linalg.solve(orig_cell, cell).T``)."""
    return (inverse(reference) @ cell).transpose(-1, -2)


def voigt_to_full(voigt: torch.Tensor) -> torch.Tensor:
    """``[B, 6]`` Voigt (xx, yy, zz, yz, xz, xy) as symmetric ``[B, 3, 3]``."""
    i, j = zip(*VOIGT_PAIRS, strict=True)
    full = voigt.new_zeros((voigt.shape[0], 3, 3))
    full[:, i, j] = voigt
    full[:, j, i] = voigt
    return full


def full_to_voigt(full: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` as ``[B, 6]`` Voigt (xx, yy, zz, yz, xz, xy), the upper triangle."""
    i, j = zip(*VOIGT_PAIRS, strict=True)
    return full[:, i, j]


def inverse(matrix: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` inverses by the adjugate: elementwise work only (no LAPACK call per matrix)."""
    a, b, c = matrix[..., 0, 0], matrix[..., 0, 1], matrix[..., 0, 2]
    d, e, f = matrix[..., 1, 0], matrix[..., 1, 1], matrix[..., 1, 2]
    g, h, i = matrix[..., 2, 0], matrix[..., 2, 1], matrix[..., 2, 2]
    cofactors = torch.stack(
        [
            torch.stack([e * i - f * h, c * h - b * i, b * f - c * e], -1),
            torch.stack([f * g - d * i, a * i - c * g, c * d - a * f], -1),
            torch.stack([d * h - e * g, b * g - a * h, a * e - b * d], -1),
        ],
        -2,
    )
    determinant = a * cofactors[..., 0, 0] + b * cofactors[..., 1, 0] + c * cofactors[..., 2, 0]
    return cofactors / determinant[..., None, None]


def sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` principal square roots (Denman–Beavers, a fixed number of iterations).

    For matrices with no eigenvalue on the closed negative real axis, as the
    deformation gradients of cells that stay right-handed.
    """
    y, z = matrix, torch.eye(3, dtype=matrix.dtype, device=matrix.device).expand_as(matrix)
    for _ in range(_SQRT_ITERATIONS):
        y, z = 0.5 * (y + inverse(z)), 0.5 * (z + inverse(y))
    return y


def logm(matrix: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` principal matrix logarithms (inverse scaling and squaring).

    Takes :data:`_SQRT_ROOTS` square roots, then the series of ``2 atanh``;
    round-off level agreement with ``scipy.linalg.logm`` for deformation
    gradients within ‖F − I‖ ≲ 1.
    """
    eye = torch.eye(3, dtype=matrix.dtype, device=matrix.device)
    y = matrix
    for _ in range(_SQRT_ROOTS):
        y = sqrtm(y)
    z = (y - eye) @ inverse(y + eye)
    z2 = z @ z
    term, total = z, z.clone()
    for k in range(1, _LOG_TERMS):
        term = term @ z2
        total = total + term / (2 * k + 1)
    return (2.0 * 2**_SQRT_ROOTS) * total


def expm(matrix: torch.Tensor) -> torch.Tensor:
    """``[B, n, n]`` matrix exponentials: trace shift, fixed scaling and squaring, Taylor series.

    A fixed number of squarings (:data:`_EXP_SQUARINGS`) and terms
    (:data:`_EXP_TERMS`) instead of a norm-dependent choice: no host decision,
    and round-off level agreement with ``scipy.linalg.expm`` for traceless
    parts of norm up to ~20.
    """
    size = matrix.shape[-1]
    eye = torch.eye(size, dtype=matrix.dtype, device=matrix.device)
    shift = matrix.diagonal(dim1=-2, dim2=-1).sum(-1)[..., None, None] / size
    x = (matrix - shift * eye) / 2**_EXP_SQUARINGS
    result = eye + x / _EXP_TERMS
    for k in range(_EXP_TERMS - 1, 0, -1):
        result = eye + (x @ result) / k
    for _ in range(_EXP_SQUARINGS):
        result = result @ result
    return result * torch.exp(shift)


def expm_frechet(matrix: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """``[B, 3, 3]`` ``L(A, E)``, the derivative of ``exp`` at ``A`` along ``E`` (both ``[B, 3, 3]``).

    ``L`` is linear in ``E``: the direction is scaled to unit size for the
    block exponential and the result scaled back.
    """
    size = direction.abs().amax(dim=(-2, -1), keepdim=True)
    size = torch.where(size > 0, size, torch.ones_like(size))
    block = matrix.new_zeros((matrix.shape[0], 6, 6))
    block[:, :3, :3] = matrix
    block[:, 3:, 3:] = matrix
    block[:, :3, 3:] = direction / size
    return expm(block)[:, :3, 3:] * size
