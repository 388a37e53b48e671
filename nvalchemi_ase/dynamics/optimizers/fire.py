"""FIRE in the stage loop, per system (see :mod:`nvalchemi_ase.ops.fire`).

The whole FIRE step happens in ``pre_update`` with the forces of the previous
compute (primed before the first step); ``post_update`` does nothing. On a CPU
in float64, without a cell filter or the downhill check, the step is one warp
kernel (:mod:`nvalchemi_ase.ops.fire_kernel`) that also takes a masked update's
members; elsewhere it is the torch step of :mod:`nvalchemi_ase.ops.fire`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics import variable_cell
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.dynamics.variable_cell import CellFilter, Coordinates
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops.fire import (
    DownhillState,
    FireParameters,
    FireState,
    fire_downhill_check,
    fire_step,
    fire_uphill,
)


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
    downhill_check
        ASE's ``downhill_check``: a system whose energy rose since its last
        step goes back to the positions of that step and restarts its FIRE
        velocities (see :func:`~nvalchemi_ase.ops.fire.fire_downhill_check`).
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
    FIRE's velocities and its per-system ``dt``, ``a`` and step counter live
    on the batch as fields ``fire_velocities``, ``fire_dt``, ``fire_a`` and
    ``fire_n``, so they follow the systems when batches are sliced or refilled.
    ``batch.velocities`` is not touched. With ``downhill_check`` the last
    accepted energy and positions are fields too, ``fire_e_last`` and
    ``fire_r_last``; the energy compared is :meth:`downhill_energy`.
    """

    default_fmax = 0.05
    cell_filter: CellFilter | None = None
    row_fields: tuple[str, ...] = ()

    state_fields: tuple[str, ...] = ("fire_velocities", "fire_dt", "fire_a", "fire_n")

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
        downhill_check: bool = False,
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
            raise ValueError(f"maxstep must be positive, got {maxstep}")
        self.parameters = FireParameters(maxstep, dtmax, Nmin, finc, fdec, astart, fa)
        self.a = a
        self.downhill_check = downhill_check
        self.energy_offset: torch.Tensor | None = None
        """``[B]`` added to ``batch.energy`` for the downhill check (constraint energy terms), or None."""
        if downhill_check:
            if cell_filter is not None:
                raise NotImplementedError("FIRE: downhill_check with a cell filter is not supported")
            self.state_fields = (*type(self).state_fields, "fire_e_last", "fire_r_last")
        variable_cell.attach(self, cell_filter, ("fire_velocities",))

    @property
    def dt_internal(self) -> float:
        return self.dt  # FIRE's dt is ASE's unitless step parameter

    def init_state(self, batch: Batch) -> None:
        """FIRE's fields, unless carried over from an earlier run on this batch.

        ``fire_e_last`` starts at +inf: a system already started (restart
        file, earlier run without the check) records before it compares.
        """
        names = batch.field_names()
        zeros = torch.zeros(batch.num_graphs, dtype=batch.dtype, device=batch.device)
        if "fire_dt" not in names:
            batch.add_field("fire_velocities", torch.zeros_like(batch.positions), Scope.ATOM)
            batch.add_field("fire_dt", zeros + self.dt, Scope.SYSTEM)
            batch.add_field("fire_a", zeros + self.a, Scope.SYSTEM)
            batch.add_field("fire_n", torch.full_like(zeros, -1, dtype=torch.long), Scope.SYSTEM)
        if self.downhill_check and "fire_e_last" not in names:
            batch.add_field("fire_e_last", zeros + torch.inf, Scope.SYSTEM)
            batch.add_field("fire_r_last", batch.positions.clone(), Scope.ATOM)
        variable_cell.init_state(self, batch)

    def downhill_energy(self, batch: Batch) -> torch.Tensor:
        """``[B]`` the energy the downhill check compares: ``batch.energy`` plus :attr:`energy_offset`."""
        energy = batch.energy.view(-1)
        return energy if self.energy_offset is None else energy + self.energy_offset

    def uphill(self, batch: Batch) -> torch.Tensor:
        """``[B]`` bool: systems the next step sends back to ``fire_r_last`` (none without the check)."""
        if not self.downhill_check:
            return torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
        return fire_uphill(self.downhill_energy(batch), batch.fire_e_last, batch.fire_n)

    def pre_update(self, batch: Batch) -> None:
        if not self._kernel_step(batch, None):
            self._torch_step(batch)

    def masked_pre_update(self, batch: Batch, members: torch.Tensor) -> None:
        """The step for ``members`` only: in the kernel, which copies the others' rows, when it
        takes the step (a CPU, float64, no cell filter, no downhill check); else held and restored."""
        if not self._kernel_step(batch, members):
            super().masked_pre_update(batch, members)

    def _kernel_step(self, batch: Batch, members: torch.Tensor | None) -> bool:
        """The step of :mod:`nvalchemi_ase.ops.fire_kernel`, when it applies; whether it ran."""
        if self.cell_filter is not None or self.downhill_check:
            return False
        state = FireState(batch.fire_velocities, batch.fire_dt, batch.fire_a, batch.fire_n)
        kernel = _fire_kernel()
        if not kernel.fits(batch.positions, batch.forces, state, self.parameters):
            return False
        if members is None:
            members = self._scratch_mask(batch.fire_dt.shape, batch.device).fill_(True)
        positions, state = kernel.fire_step(
            batch.positions, batch.forces, state, self.parameters, batch.ptr, members
        )
        # the kernel's outputs are made like the batch's own fields: no checks needed
        batch.assign("positions", positions)
        for name, value in zip(FIRE.state_fields, state, strict=True):
            batch.assign(name, value)
        return True

    def _torch_step(self, batch: Batch) -> None:
        rows = Coordinates(batch, self.cell_filter)
        state = FireState(rows.state("fire_velocities"), batch.fire_dt, batch.fire_a, batch.fire_n)
        positions, uphill = rows.positions, None
        if self.downhill_check:
            memory = DownhillState(batch.fire_e_last, batch.fire_r_last)
            positions, uphill, memory = fire_downhill_check(
                positions, self.downhill_energy(batch), memory, batch.fire_n, batch.batch_idx
            )
            batch.fire_e_last, batch.fire_r_last = memory
        positions, state = fire_step(positions, rows.forces, state, self.parameters, rows.batch_idx, uphill)
        rows.move(positions)
        rows.store("fire_velocities", state.velocities)
        batch.fire_dt, batch.fire_a, batch.fire_n = state.dt, state.a, state.n


@functools.cache
def _fire_kernel() -> Any:
    """:mod:`nvalchemi_ase.ops.fire_kernel`, imported on first use (it loads warp), looked up once."""
    from nvalchemi_ase.ops import fire_kernel

    return fire_kernel
