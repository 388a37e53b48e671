"""MDMin in the stage loop, per system (see :mod:`nvalchemi_ase.ops.mdmin`).

The whole MDMin step happens in ``pre_update`` with the forces of the previous
compute (primed before the first step); ``post_update`` does nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics import variable_cell
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.dynamics.variable_cell import CellFilter, Coordinates
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops.mdmin import MDMinState, mdmin_step


class MDMin(BaseDynamics):
    """Velocity-projected MD relaxation, ``ase.optimize.MDMin``'s algorithm and defaults, batched.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        MDMin's step parameter, as ASE's ``dt=0.2``. MDMin ignores masses
        (unit masses), so this is not a time in fs; it is ASE's number,
        unconverted. (ASE's ``dt or 0.2`` quirk, which turns ``dt=0`` into 0.2,
        belongs to the ASE look-alike; here ``dt`` must be positive.)
    maxstep
        Largest displacement of any atom in one step, Å (ASE's 0.2).
    cell_filter
        A :class:`~nvalchemi_ase.dynamics.variable_cell.CellFilter`: relax the
        cells with the atoms, as ASE's optimizers given a cell filter (the
        model must compute stress).
    n_steps, hooks
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.
    convergence_hook
        Default ``ConvergenceHook.from_fmax(0.05)``.

    Notes
    -----
    MDMin's velocities and first-step flag live on the batch as fields
    ``mdmin_velocities [N, 3]`` and ``mdmin_started [B]``, so they follow the
    systems when batches are sliced or refilled. ``batch.velocities`` is not
    touched. No host sync in a step.
    """

    default_fmax = 0.05
    cell_filter: CellFilter | None = None
    row_fields: tuple[str, ...] = ()

    state_fields = ("mdmin_velocities", "mdmin_started")

    def __init__(
        self,
        model: Model,
        dt: float = 0.2,
        maxstep: float = 0.2,
        cell_filter: CellFilter | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, dt, n_steps=n_steps, hooks=hooks, convergence_hook=convergence_hook, **options
        )
        if not maxstep > 0.0:
            raise ValueError(f"maxstep must be positive (Å), got {maxstep}")
        self.maxstep = float(maxstep)
        variable_cell.attach(self, cell_filter, ("mdmin_velocities",))

    @property
    def dt_internal(self) -> float:
        return self.dt  # MDMin's dt is ASE's unitless step parameter

    def init_state(self, batch: Batch) -> None:
        if "mdmin_velocities" not in batch.field_names():  # else carried over from an earlier run
            started = torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
            batch.add_field("mdmin_velocities", torch.zeros_like(batch.positions), Scope.ATOM)
            batch.add_field("mdmin_started", started, Scope.SYSTEM)
        variable_cell.init_state(self, batch)

    def pre_update(self, batch: Batch) -> None:
        rows = Coordinates(batch, self.cell_filter)
        state = MDMinState(rows.state("mdmin_velocities"), batch.mdmin_started)
        positions, state = mdmin_step(
            rows.positions, rows.forces, state, self.dt, self.maxstep, rows.batch_idx
        )
        rows.move(positions)
        rows.store("mdmin_velocities", state.velocities)
        batch.mdmin_started = state.started
