"""L-BFGS in the stage loop, per system (see :mod:`nvalchemi_ase.ops.lbfgs`).

The whole L-BFGS step happens in ``pre_update`` with the forces of the
previous compute (primed before the first step); ``post_update`` does nothing.
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
from nvalchemi_ase.ops.lbfgs import LBFGSState, lbfgs_step

_ROW_FIELDS = ("lbfgs_s", "lbfgs_y", "lbfgs_positions0", "lbfgs_forces0")
"""The per-atom state, which a cell filter extends with cell rows."""


class LBFGS(BaseDynamics):
    """Limited-memory BFGS, ``ase.optimize.LBFGS``'s algorithm and defaults (no line search), batched.

    Parameters
    ----------
    model
        Batched model returning forces.
    maxstep
        Largest displacement of any atom in one step before damping, Å (ASE's
        0.2). A longer step is scaled down as a whole. As in ASE, at most 1 Å.
    memory
        Number of (s, y) pairs kept per system (ASE's 100).
    damping
        Factor on every step (ASE's 1.0).
    alpha
        Initial Hessian guess, eV/Å² (ASE's 70.0); the inverse Hessian starts,
        and in the recursion always starts, as ``I/alpha``.
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
    The state lives on the batch: ``lbfgs_s``, ``lbfgs_y [N, memory, 3]`` and
    ``lbfgs_rho [B, memory]`` (the history, oldest first, per atom so that it
    needs no padding), ``lbfgs_iteration [B]`` and ``lbfgs_positions0``,
    ``lbfgs_forces0 [N, 3]``; it follows the systems when batches are sliced,
    joined or refilled. No host sync in a step.
    """

    default_fmax = 0.05
    cell_filter: CellFilter | None = None
    row_fields: tuple[str, ...] = ()

    state_fields = (
        "lbfgs_s",
        "lbfgs_y",
        "lbfgs_rho",
        "lbfgs_iteration",
        "lbfgs_positions0",
        "lbfgs_forces0",
    )

    def __init__(
        self,
        model: Model,
        maxstep: float = 0.2,
        memory: int = 100,
        damping: float = 1.0,
        alpha: float = 70.0,
        cell_filter: CellFilter | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, 1.0, n_steps=n_steps, hooks=hooks, convergence_hook=convergence_hook, **options
        )
        if not 0.0 < maxstep <= 1.0:
            raise ValueError(f"maxstep must be in (0, 1] Å, as in ASE's LBFGS; got {maxstep}")
        if isinstance(memory, bool) or int(memory) != memory or memory < 0:
            raise ValueError(f"memory must be a non-negative integer, got {memory!r}")
        if not damping > 0.0:
            raise ValueError(f"damping must be positive, got {damping}")
        if not alpha > 0.0:
            raise ValueError(f"alpha must be positive (eV/Å²), got {alpha}")
        self.maxstep = float(maxstep)
        self.memory = int(memory)
        self.damping = float(damping)
        self.alpha = float(alpha)
        variable_cell.attach(self, cell_filter, _ROW_FIELDS)
        self._history_bound = self.memory
        """Host-side bound on every system's history length: steps taken since the state was
        created (the recursion visits no more slots than this, so early steps stay cheap)."""

    @property
    def dt_internal(self) -> float:
        return self.dt  # L-BFGS has no time step; dt is an unused placeholder

    def init_state(self, batch: Batch) -> None:
        if "lbfgs_s" in batch.field_names():
            if batch.lbfgs_s.shape[1] != self.memory:
                raise ValueError(
                    f"the batch carries an L-BFGS history of {batch.lbfgs_s.shape[1]} pairs, "
                    f"this engine has memory={self.memory}"
                )
            self._history_bound = self.memory  # carried over: its fill is unknown here
            variable_cell.init_state(self, batch)
            return
        history = batch.positions.new_zeros((batch.num_nodes, self.memory, 3))
        rho = batch.positions.new_zeros((batch.num_graphs, self.memory))
        iteration = torch.zeros(batch.num_graphs, dtype=torch.long, device=batch.device)
        batch.add_field("lbfgs_s", history, Scope.ATOM)
        batch.add_field("lbfgs_y", history.clone(), Scope.ATOM)
        batch.add_field("lbfgs_rho", rho, Scope.SYSTEM)
        batch.add_field("lbfgs_iteration", iteration, Scope.SYSTEM)
        batch.add_field("lbfgs_positions0", torch.zeros_like(batch.positions), Scope.ATOM)
        batch.add_field("lbfgs_forces0", torch.zeros_like(batch.positions), Scope.ATOM)
        self._history_bound = 0
        variable_cell.init_state(self, batch)

    def pre_update(self, batch: Batch) -> None:
        loops = min(self._history_bound, self.memory)
        rows = Coordinates(batch, self.cell_filter)
        state = LBFGSState(
            *(
                rows.state(f"lbfgs_{name}")
                if f"lbfgs_{name}" in _ROW_FIELDS
                else getattr(batch, f"lbfgs_{name}")
                for name in LBFGSState._fields
            )
        )
        positions, state = lbfgs_step(
            rows.positions,
            rows.forces,
            state,
            self.alpha,
            self.maxstep,
            self.damping,
            rows.batch_idx,
            loops=loops,
        )
        self._history_bound = min(self._history_bound + 1, self.memory)
        rows.move(positions)
        for name, value in zip(LBFGSState._fields, state, strict=True):
            if f"lbfgs_{name}" in _ROW_FIELDS:
                rows.store(f"lbfgs_{name}", value)
            else:
                setattr(batch, f"lbfgs_{name}", value)

    @staticmethod
    def state(batch: Batch) -> LBFGSState:
        """The L-BFGS state the batch carries (its ``lbfgs_*`` fields)."""
        return LBFGSState(*(getattr(batch, f"lbfgs_{name}") for name in LBFGSState._fields))

    @staticmethod
    def store(batch: Batch, state: LBFGSState) -> None:
        """Put ``state`` back on the batch's ``lbfgs_*`` fields."""
        for name, value in zip(LBFGSState._fields, state, strict=True):
            setattr(batch, f"lbfgs_{name}", value)
