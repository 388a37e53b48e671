"""Units: ASE's, re-exported; the only place unit conversions live.

Inside the package everything is in ASE units: Å, eV, amu, K and ASE's time unit
(``fs`` ≈ 0.09823, so one internal time unit ≈ 10.18 fs). Velocities are in Å per
internal time unit; stresses in eV/Å³ with ASE's sign (positive = tensile).
"""

from __future__ import annotations

from typing import Any

from ase import units as _ase_units

fs: float = _ase_units.fs
"""One femtosecond in ASE's internal time unit."""

kB: float = _ase_units.kB
"""Boltzmann's constant in eV/K."""

GPa: float = _ase_units.GPa
"""One GPa in eV/Å³."""

Bohr: float = _ase_units.Bohr
"""One Bohr radius in Å."""


def fs_to_internal(dt_fs: Any) -> Any:
    """Convert a time in femtoseconds to ASE's internal time unit (floats or arrays)."""
    return dt_fs * fs


def internal_to_fs(time: Any) -> Any:
    """Convert a time in ASE's internal unit to femtoseconds (floats or arrays)."""
    return time / fs


def rate_internal_to_fs(rate: Any) -> Any:
    """Convert a rate in 1/(ASE time) (ASE's ``friction``) to 1/fs."""
    return rate * fs


def kelvin_to_ev(temperature: Any) -> Any:
    """Convert a temperature in K to kT in eV (ASE's ``temp`` attributes)."""
    return kB * temperature


def ev_to_kelvin(energy: Any) -> Any:
    """Convert kT in eV to a temperature in K."""
    return energy / kB
