"""MDMin, per system, exactly as ``ase.optimize.MDMin`` (velocity-projected MD with unit masses).

Per system, with F the forces and v MDMin's own velocities (flattened over the
system's atoms)::

    first step:  v ← 0
    later steps: v ← v + ½ dt F;  v ← 0 if v·F < 0, else v ← F (v·F) / (F·F)
    then:        v ← v + ½ dt F;  dr = dt v
                 dr ← dr · min(1, maxstep / (1e-6 + max_i |dr_i|))   (i over the system's atoms)
                 r ← r + dr

The projection keeps only the part of the velocity along the force, and drops
it when it points uphill: a damped dynamics that stops at every turn.

Reference: ASE's ``ase/optimize/mdmin.py`` (3.29); A. H. Larsen et al.,
J. Phys.: Condens. Matter 29, 273002 (2017), doi:10.1088/1361-648X/aa680e.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, segment_sum, xyz_sum


class MDMinState(NamedTuple):
    """Per-system MDMin state: velocities ``[N, 3]``; ``started [B]`` bool (False before the first step)."""

    velocities: torch.Tensor
    started: torch.Tensor


def _per_atom(value: torch.Tensor | float, batch_idx: torch.Tensor) -> torch.Tensor | float:
    """A ``[B]`` tensor as an ``[N, 1]`` column; a float unchanged."""
    if isinstance(value, torch.Tensor) and value.dim() > 0:
        return segment_broadcast(value, batch_idx).unsqueeze(1)
    return value


def project_velocities(
    velocities: torch.Tensor, forces: torch.Tensor, batch_idx: torch.Tensor, num_systems: int
) -> torch.Tensor:
    """``v ← 0`` where ``v·F < 0``, else ``v ← F (v·F) / (F·F)``, per system (dot products over its atoms).

    Parameters
    ----------
    velocities, forces
        ``[N, 3]`` (Å per MDMin time unit; eV/Å).
    batch_idx
        ``[N]`` system of each atom.
    num_systems
        B.
    """
    power = segment_sum(xyz_sum(velocities * forces), batch_idx, num_systems)
    force_squared = segment_sum(xyz_sum(forces * forces), batch_idx, num_systems)
    projected = (
        forces
        * segment_broadcast(power, batch_idx).unsqueeze(1)
        / segment_broadcast(force_squared, batch_idx).unsqueeze(1)
    )
    return torch.where(
        segment_broadcast(power < 0.0, batch_idx).unsqueeze(1), torch.zeros_like(velocities), projected
    )


def cap_longest_step(
    displacements: torch.Tensor,
    maxstep: torch.Tensor | float,
    batch_idx: torch.Tensor,
    num_systems: int,
) -> torch.Tensor:
    """MDMin's cap: ``dr · clip(maxstep / (1e-6 + max_i |dr_i|), 0, 1)`` per system, ``[N, 3]`` Å."""
    longest = segment_max(xyz_sum(displacements.square()), batch_idx, num_systems).clamp(min=0.0).sqrt()
    scaling = torch.clamp(maxstep / (1e-6 + longest), 0.0, 1.0)
    return displacements * segment_broadcast(scaling, batch_idx).unsqueeze(1)


def mdmin_step(
    positions: torch.Tensor,
    forces: torch.Tensor,
    state: MDMinState,
    dt: torch.Tensor | float,
    maxstep: torch.Tensor | float,
    batch_idx: torch.Tensor,
) -> tuple[torch.Tensor, MDMinState]:
    """One MDMin step for every system; returns new positions ``[N, 3]`` and state (no host sync).

    Parameters
    ----------
    positions, forces
        ``[N, 3]``, Å and eV/Å.
    state
        :class:`MDMinState` of the previous step.
    dt
        ASE's MDMin step parameter (unit masses), a float or ``[B]``.
    maxstep
        Largest displacement of any atom, Å; a float or ``[B]``.
    batch_idx
        ``[N]`` system of each atom.
    """
    num_systems = state.started.shape[0]
    half = _per_atom(0.5 * dt, batch_idx)
    kicked = state.velocities + half * forces
    projected = project_velocities(kicked, forces, batch_idx, num_systems)
    started = segment_broadcast(state.started, batch_idx).unsqueeze(1)
    velocities = torch.where(started, projected, torch.zeros_like(projected))
    velocities = velocities + half * forces
    displacements = _per_atom(dt, batch_idx) * velocities
    displacements = cap_longest_step(displacements, maxstep, batch_idx, num_systems)
    return positions + displacements, MDMinState(velocities, torch.ones_like(state.started))
