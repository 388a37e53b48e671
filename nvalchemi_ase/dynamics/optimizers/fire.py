"""FIRE in the stage loop, per system (see :mod:`nvalchemi_ase.ops.fire`).

The whole FIRE step happens in ``pre_update`` with the forces of the previous
compute (primed before the first step); ``post_update`` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops.fire import FireParameters, FireState, fire_step


class FIRE(BaseDynamics):
    """Fast inertial relaxation, ``ase.optimize.FIRE``'s algorithm and defaults, batched.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        FIRE's initial step parameter, as ASE's ``dt=0.1``. FIRE ignores masses
        (v ← v + dt F, r ← r + dt v), so this is not a time in fs; it is ASE's
        number, unconverted.
    maxstep, dtmax, Nmin, finc, fdec, astart, fa, a
        ASE's FIRE parameters and defaults (``a`` is the initial mixing).
    n_steps, hooks
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.
    convergence_hook
        Default ``ConvergenceHook.from_fmax(0.05)``.

    Notes
    -----
    FIRE's velocities and its per-system ``dt``, ``a`` and step counter live
    on the batch as fields ``fire_velocities``, ``fire_dt``, ``fire_a`` and
    ``fire_n``, so they follow the systems when batches are sliced or refilled.
    ``batch.velocities`` is not touched.
    """

    default_fmax = 0.05

    state_fields = ("fire_velocities", "fire_dt", "fire_a", "fire_n")

    def __init__(
        self,
        model: Model,
        dt: float = 0.1,
        maxstep: float = 0.2,
        dtmax: float = 1.0,
        Nmin: int = 5,
        finc: float = 1.1,
        fdec: float = 0.5,
        astart: float = 0.1,
        fa: float = 0.99,
        a: float = 0.1,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, dt, n_steps=n_steps, hooks=hooks, convergence_hook=convergence_hook, **options
        )
        if not maxstep > 0.0:
            raise ValueError(f"maxstep must be positive, got {maxstep}")
        self.parameters = FireParameters(maxstep, dtmax, Nmin, finc, fdec, astart, fa)
        self.a = a

    @property
    def dt_internal(self) -> float:
        return self.dt  # FIRE's dt is ASE's unitless step parameter

    def init_state(self, batch: Batch) -> None:
        if "fire_dt" in batch.field_names():
            return  # carried over from an earlier run on this batch
        zeros = torch.zeros(batch.num_graphs, dtype=batch.dtype, device=batch.device)
        batch.add_field("fire_velocities", torch.zeros_like(batch.positions), Scope.ATOM)
        batch.add_field("fire_dt", zeros + self.dt, Scope.SYSTEM)
        batch.add_field("fire_a", zeros + self.a, Scope.SYSTEM)
        batch.add_field("fire_n", torch.full_like(zeros, -1, dtype=torch.long), Scope.SYSTEM)

    def pre_update(self, batch: Batch) -> None:
        state = FireState(batch.fire_velocities, batch.fire_dt, batch.fire_a, batch.fire_n)
        positions, state = fire_step(batch.positions, batch.forces, state, self.parameters, batch.batch_idx)
        batch.positions = positions
        batch.fire_velocities, batch.fire_dt, batch.fire_a, batch.fire_n = state
