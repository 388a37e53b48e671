"""Andersen's stochastic collisions, in the scheme of ``ase.md.andersen.Andersen``.

Velocity Verlet in which, after the first half kick, each Cartesian velocity
component is replaced with probability ``p`` by a fresh Maxwell–Boltzmann
component. Gaussians are made from uniforms by Box–Muller, as ASE does::

    z = width · cos(2π x) · √(−2 ln(1 − y))          (x, y ~ U[0, 1))

    [fixcm]  v ← v + z_com                  (width √(kT/M), one per system)
    v ← v + ½ dt F/m
    v_c ← z_c  where u_c ≤ p                (width √(kT/m), u ~ U[0, 1), per component)
    [fixcm]  R₀ ← R_com(r);  v ← v − V_com(v)
    r ← r + dt v;  [fixcm] r ← r + R₀ − R_com(r);  v ← (r_new − r_old)/dt
    F ← F(r)
    v ← v + ½ dt F/m;  [fixcm] v ← v − V_com(v)

Reference: H. C. Andersen, J. Chem. Phys. 72, 2384 (1980), doi:10.1063/1.439486.
"""

from __future__ import annotations

import math

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_weighted_mean


def box_muller(width: torch.Tensor, uniform_x: torch.Tensor, uniform_y: torch.Tensor) -> torch.Tensor:
    """Gaussians ``width · cos(2π x) · √(−2 ln(1 − y))`` from two uniform arrays of one shape.

    ``width`` broadcasts against them (``[N, 1]`` per atom or ``[B, 1]`` per system).
    """
    return width * torch.cos(2.0 * math.pi * uniform_x) * torch.sqrt(-2.0 * torch.log(1.0 - uniform_y))


def collide(
    velocities: torch.Tensor, random_velocities: torch.Tensor, chance: torch.Tensor, probability: torch.Tensor
) -> torch.Tensor:
    """Replace each component whose ``chance`` (``[N, 3]`` uniforms) is ≤ ``probability`` (``[N, 1]``)."""
    return torch.where(chance <= probability, random_velocities, velocities)


def center_of_mass(
    positions: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor, num_systems: int
) -> torch.Tensor:
    """``[B, 3]`` mass-weighted mean position per system, Å."""
    return segment_weighted_mean(positions, masses, batch_idx, num_systems)


def move_center_of_mass(
    positions: torch.Tensor, target: torch.Tensor, masses: torch.Tensor, batch_idx: torch.Tensor
) -> torch.Tensor:
    """Shift each system rigidly so its centre of mass is ``target[B, 3]`` (ASE's ``set_center_of_mass``)."""
    shift = target - center_of_mass(positions, masses, batch_idx, target.shape[0])
    return positions + segment_broadcast(shift, batch_idx)
