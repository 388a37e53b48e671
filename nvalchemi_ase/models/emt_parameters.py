"""EMT parameters and the quantities ASE derives from them (cutoff, smoothing, fcc reference sums).

The table is the one of ``ase.calculators.emt`` (Jacobsen, Stoltze and Nørskov,
Surf. Sci. 366, 394 (1996), doi:10.1016/0039-6028(96)00816-3, for the seven
metals; H, C, N and O are ASE's "just for fun" values). Tabulated in ASE's
units (eV and bohr), converted to Å here.

Cutoff conventions (as ASE): with ``s_max`` the largest Wigner–Seitz radius
considered (the whole table, or with ``asap_cutoff`` the elements of the system),
``r1 = β·s_max`` is the fcc nearest-neighbour distance; the logistic cutoff
``w(r) = 1 / (1 + exp(a·(r − rc)))`` has its midpoint ``rc`` halfway between
the 3rd and 4th fcc neighbour shells, ``rc = r1·(√3 + 2)/2``, and the slope
``a`` that makes ``w(2·r1) = 1e-4``. Pairs count while ``r < rc_list``, with
``rc_list = rc + 0.5`` Å (or ``1.045·rc`` with ``asap_cutoff``).
"""

from __future__ import annotations

import math

import torch
from ase.data import atomic_numbers, chemical_symbols

from nvalchemi_ase.units import Bohr

BETA = 1.809
"""(16π/3)^(1/3)/√2, rounded as ASE (and ASAP) round it: r1 = β·s0 in fcc."""

# columns:  E0 (eV), s0 (bohr), V0 (eV), eta2 (1/bohr), kappa (1/bohr), lambda (1/bohr), n0 (1/bohr³)
_TABLE_BOHR: dict[str, tuple[float, float, float, float, float, float, float]] = {
    "Al": (-3.28, 3.00, 1.493, 1.240, 2.000, 1.169, 0.00700),
    "Cu": (-3.51, 2.67, 2.476, 1.652, 2.740, 1.906, 0.00910),
    "Ag": (-2.96, 3.01, 2.132, 1.652, 2.790, 1.892, 0.00547),
    "Au": (-3.80, 3.00, 2.321, 1.674, 2.873, 2.182, 0.00703),
    "Ni": (-4.44, 2.60, 3.673, 1.669, 2.757, 1.948, 0.01030),
    "Pd": (-3.90, 2.87, 2.773, 1.818, 3.107, 2.155, 0.00688),
    "Pt": (-5.85, 2.90, 4.067, 1.812, 3.145, 2.192, 0.00802),
    "H": (-3.21, 1.31, 0.132, 2.652, 2.790, 3.892, 0.00547),
    "C": (-3.50, 1.81, 0.332, 1.652, 2.790, 1.892, 0.01322),
    "N": (-5.10, 1.88, 0.132, 1.652, 2.790, 1.892, 0.01222),
    "O": (-4.60, 1.95, 0.332, 1.652, 2.790, 1.892, 0.00850),
}

SUPPORTED_ELEMENTS: tuple[str, ...] = tuple(_TABLE_BOHR)
"""Element symbols EMT has parameters for."""

COLUMNS: tuple[str, ...] = ("E0", "s0", "V0", "eta2", "kappa", "lambda", "n0")
"""Column order of :func:`parameter_table` (units eV, Å, eV, 1/Å, 1/Å, 1/Å, 1/Å³)."""

_LOGISTIC_FLOOR = 1e-4
"""Value of the logistic cutoff at the 4th fcc neighbour shell."""
_FCC_SHELLS = ((12.0, 1.0), (6.0, 2.0), (24.0, 3.0))
"""(number of sites, squared distance in units of r1²) of the first three fcc shells."""


def _in_angstrom(row: tuple[float, ...]) -> tuple[float, ...]:
    e0, s0, v0, eta2, kappa, lam, n0 = row
    return (e0, s0 * Bohr, v0, eta2 / Bohr, kappa / Bohr, lam / Bohr, n0 / Bohr**3)


def parameter_table() -> torch.Tensor:
    """``[119, 7]`` float64 parameters indexed by atomic number (columns :data:`COLUMNS`).

    Rows of elements without parameters are NaN.
    """
    table = torch.full((len(chemical_symbols), len(COLUMNS)), math.nan, dtype=torch.float64)
    for symbol, row in _TABLE_BOHR.items():
        table[atomic_numbers[symbol]] = torch.tensor(_in_angstrom(row), dtype=torch.float64)
    return table


def largest_s0() -> float:
    """Å, the largest Wigner–Seitz radius of the table (what sets ASE's default cutoff)."""
    return max(row[1] for row in _TABLE_BOHR.values()) * Bohr


def cutoff_radii(s_max: torch.Tensor, asap_cutoff: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logistic midpoint ``rc``, list radius ``rc_list`` (Å) and slope ``a`` (1/Å) for ``s_max``.

    Parameters
    ----------
    s_max
        Å, the largest Wigner–Seitz radius considered, any shape.
    asap_cutoff
        ``rc_list = 1.045·rc`` when True, else ``rc + 0.5``.
    """
    r1 = BETA * s_max
    rc = r1 * 0.5 * (math.sqrt(3.0) + 2.0)  # ASE's order of operations
    slope = math.log(1.0 / _LOGISTIC_FLOOR - 1.0) / (2.0 * r1 - rc)
    rc_list = rc * 1.045 if asap_cutoff else rc + 0.5
    return rc, rc_list, slope


def largest_cutoff(asap_cutoff: bool) -> float:
    """Å, ``rc_list`` of the whole table: the neighbour-list radius any system may need."""
    _, rc_list, _ = cutoff_radii(torch.tensor(largest_s0(), dtype=torch.float64), asap_cutoff)
    return float(rc_list)


def fcc_gammas(
    s0: torch.Tensor, eta2: torch.Tensor, kappa: torch.Tensor, rc: torch.Tensor, slope: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference sums γ₁, γ₂ of each atom's element in its own fcc lattice (first three shells).

    γ₁ = Σ_shells (n/12)·w(r)·exp(−η₂(r − β·s0)), γ₂ = the same with κ/β for η₂,
    with ``w`` the logistic cutoff of the atom's system. All arguments ``[N]``.
    """
    gamma1 = torch.zeros_like(s0)
    gamma2 = torch.zeros_like(s0)
    r1 = BETA * s0
    for sites, distance2 in _FCC_SHELLS:  # three fixed shells, not a loop over data
        r = r1 * math.sqrt(distance2)
        weight = (sites / 12.0) / (1.0 + torch.exp(slope * (r - rc)))
        gamma1 = gamma1 + weight * torch.exp(-eta2 * (r - r1))
        gamma2 = gamma2 + weight * torch.exp(-kappa / BETA * (r - r1))
    return gamma1, gamma2
