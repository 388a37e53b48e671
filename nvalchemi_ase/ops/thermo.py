"""Per-system observables: kinetic energy, temperature, largest force."""

from __future__ import annotations

import functools
from typing import Any

import torch

from nvalchemi_ase.ops.segment import segment_max, segment_sum, xyz_sum

K_B = 8.617330337217213e-05
"""Boltzmann's constant in eV/K, ASE's value (CODATA 2014); ops import nothing but torch."""


def kinetic_energy(
    velocities: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, num_systems: int
) -> torch.Tensor:
    """``[B]`` Σ ½ m v² per system, eV (velocities in Å per ASE time unit, masses in amu)."""
    per_atom = 0.5 * masses * xyz_sum(velocities.square())
    return segment_sum(per_atom, batch_idx, num_systems)


def temperature(kinetic: torch.Tensor, degrees_of_freedom: torch.Tensor) -> torch.Tensor:
    """``[B]`` T = 2 KE / (ndof k_B), K (0 where a system has no degrees of freedom)."""
    return torch.where(degrees_of_freedom > 0, 2.0 * kinetic / (degrees_of_freedom.clamp(min=1) * K_B), 0.0)


def max_force(
    forces: torch.Tensor, batch_idx: torch.Tensor, num_systems: int, ptr: torch.Tensor | None = None
) -> torch.Tensor:
    """``[B]`` largest per-atom force norm per system, eV/Å (ASE's ``fmax``; 0 for an empty system).

    The root is taken after the maximum, on ``[B]`` values instead of ``[N]``
    (the square root is monotonic). Given the batch's ``ptr`` (``[B + 1]``), on
    a CPU in float64, it is one warp kernel instead of five operations
    (:mod:`~nvalchemi_ase.ops.max_force_kernel`), whose root is correctly
    rounded as numpy's is; torch's vectorised CPU ``sqrt`` can be one unit in
    the last place off.
    """
    if ptr is not None:
        kernel = _max_force_kernel()
        if kernel.fits(forces):
            return kernel.max_force(forces, ptr)
    return segment_max(xyz_sum(forces.square()), batch_idx, num_systems).clamp(min=0.0).sqrt()


@functools.cache
def _max_force_kernel() -> Any:
    """:mod:`nvalchemi_ase.ops.max_force_kernel`, imported on first use (it loads warp)."""
    from nvalchemi_ase.ops import max_force_kernel

    return max_force_kernel
