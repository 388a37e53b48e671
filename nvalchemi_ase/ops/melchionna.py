"""Melchionna's Nosé–Hoover / Parrinello–Rahman NPT, in the scheme of ``ase.md.melchionna.MelchionnaNPT``.

Per system: scaled positions q = r h⁻¹ − ½ (``[N, 3]``, at three times: past,
now, future), the cell h (rows are vectors, triangular) and its past, the
strain rate η (triangular ``[B, 3, 3]``), the thermostat ζ and their pasts.
Centered differences (Holian et al.) advance them::

    h⁺ = h⁻ + 2 dt h η
    η⁺ = η⁻ − 2 dt mask ∘ tri(p_f det h (σ − σ_ext))      (σ: ASE's Voigt stress with the ideal-gas term)
    ζ⁺ = ζ⁻ + 2 dt t_f (E_kin − E₀)
    q⁺ = (2q + q⁻ (β − 1) + α) (β + 1)⁻¹,  α = dt² (F/m) h⁻¹,  β = dt h (η + ½ ζ) h⁻¹
    v = (q⁺ − q⁻) h / (2 dt)

with t_f = 2 / (3 N kT τ_T²), p_f = 1 / (pfactor V₀) and E₀ = 3/2 (N − 1) kT.

References: S. Melchionna, G. Ciccotti and B. L. Holian, Mol. Phys. 78, 533
(1993), doi:10.1080/00268979300100371; S. Melchionna, Phys. Rev. E 61, 6165
(2000), doi:10.1103/PhysRevE.61.6165; B. L. Holian, A. J. De Groot, W. G.
Hoover and C. G. Hoover, Phys. Rev. A 41, 4552 (1990), doi:10.1103/PhysRevA.41.4552.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.segment import segment_broadcast

STARTED = 1e-5
"""ASE's threshold on the mean kinetic energy per atom (eV) that ends the start-up iteration early."""


def voigt(stress: torch.Tensor) -> torch.Tensor:
    """``[B, 6]`` (xx, yy, zz, yz, xz, xy) of a ``[B, 3, 3]`` stress, off-diagonals averaged (ASE's)."""
    s = stress
    off = [(s[:, 1, 2] + s[:, 2, 1]) / 2, (s[:, 0, 2] + s[:, 2, 0]) / 2, (s[:, 0, 1] + s[:, 1, 0]) / 2]
    return torch.stack([s[:, 0, 0], s[:, 1, 1], s[:, 2, 2], *off], dim=1)


def is_upper(cell: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: the cell is upper triangular (else it must be lower triangular)."""
    return (cell[:, 1, 0] == 0) & (cell[:, 2, 0] == 0) & (cell[:, 2, 1] == 0)


def triangular(six: torch.Tensor, upper: torch.Tensor) -> torch.Tensor:
    """ASE's ``_maketriangular``: ``[B, 6]`` Voigt values as an upper or lower triangular ``[B, 3, 3]``."""
    zero = torch.zeros_like(six[:, 0])
    xx, yy, zz, yz, xz, xy = six.unbind(dim=1)
    rows_upper = [[xx, xy, xz], [zero, yy, yz], [zero, zero, zz]]
    rows_lower = [[xx, zero, zero], [xy, yy, zero], [xz, yz, zz]]
    as_matrix = lambda rows: torch.stack([torch.stack(row, dim=1) for row in rows], dim=1)  # noqa: E731
    return torch.where(upper.view(-1, 1, 1), as_matrix(rows_upper), as_matrix(rows_lower))


def strain_rate_change(
    stress: torch.Tensor,
    external: torch.Tensor,
    pfact: torch.Tensor,
    cell: torch.Tensor,
    mask: torch.Tensor,
    upper: torch.Tensor,
    fraction_traceless: float,
    delta: float,
) -> torch.Tensor:
    """``[B, 3, 3]`` the change of η over ``delta`` (ASE: 2 dt a step, dt at the start).

    ``stress`` and ``external`` are ``[B, 6]`` Voigt, ``pfact`` ``[B]``,
    ``mask`` ``[3, 3]`` (0/1). A ``fraction_traceless`` below 1 keeps that
    share of the traceless part (and ignores the mask), as ASE does.
    """
    determinant = torch.linalg.det(cell)
    change = triangular(-delta * (pfact * determinant).unsqueeze(1) * (stress - external), upper)
    if fraction_traceless == 1:
        return mask * change
    trace = change.diagonal(dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1) / 3.0
    trace_part = trace * torch.eye(3, dtype=change.dtype, device=change.device)
    return trace_part + fraction_traceless * (change - trace_part)


def future_scaled_positions(
    q: torch.Tensor,
    q_past: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    cell: torch.Tensor,
    eta: torch.Tensor,
    zeta: torch.Tensor,
    batch_idx: torch.Tensor,
    dt: float,
) -> torch.Tensor:
    """``[N, 3]`` q⁺ from q, q⁻, the forces and the current h, η, ζ (ASE's ``_calculate_q_future``)."""
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    inverse = torch.linalg.inv(cell)
    per_atom = lambda matrix: segment_broadcast(matrix, batch_idx)  # noqa: E731
    alpha = (dt * dt) * torch.einsum("nj,njk->nk", forces / masses.unsqueeze(1), per_atom(inverse))
    beta = dt * (cell @ ((eta + 0.5 * zeta.view(-1, 1, 1) * eye) @ inverse))
    inverse_b = torch.linalg.inv(beta + eye)
    total = 2 * q + torch.einsum("nj,njk->nk", q_past, per_atom(beta - eye)) + alpha
    return torch.einsum("nj,njk->nk", total, per_atom(inverse_b))


def scaled_velocities(
    q_future: torch.Tensor, q_past: torch.Tensor, cell: torch.Tensor, batch_idx: torch.Tensor, dt: float
) -> torch.Tensor:
    """``[N, 3]`` v = (q⁺ − q⁻) h / (2 dt)."""
    return torch.einsum("nj,njk->nk", q_future - q_past, segment_broadcast(cell / (2 * dt), batch_idx))
