"""Velocity Verlet as two named moves.

    v ← v + ½ dt F/m          (half kick)
    r ← r + dt v              (drift)
    F ← F(r)                  (the model)
    v ← v + ½ dt F/m          (half kick)

Reference: W. C. Swope, H. C. Andersen, P. H. Berens and K. R. Wilson,
J. Chem. Phys. 76, 637 (1982), doi:10.1063/1.442716.
"""

from __future__ import annotations

import torch


def half_kick(
    velocities: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    dt: torch.Tensor | float,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``v + ½ dt F/m``: velocities ``[N, 3]``, forces ``[N, 3]``, masses ``[N]``, dt scalar or ``[N, 1]``.

    ``out``: an ``[N, 3]`` tensor to write the result into (scalar ``dt`` only; no input may share it).
    """
    if isinstance(dt, float):  # one fused operation for the common case (a scalar step)
        return torch.addcdiv(velocities, forces, masses.unsqueeze(1), value=0.5 * dt, out=out)
    return velocities + (0.5 * dt) * forces / masses.unsqueeze(1)


def drift(positions: torch.Tensor, velocities: torch.Tensor, dt: torch.Tensor | float) -> torch.Tensor:
    """``r + dt v``."""
    if isinstance(dt, float):
        return torch.add(positions, velocities, alpha=dt)
    return positions + dt * velocities
