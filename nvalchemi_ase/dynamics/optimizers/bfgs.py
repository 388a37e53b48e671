"""BFGS in the stage loop, per system (see :mod:`nvalchemi_ase.ops.bfgs`).

The whole BFGS step happens in ``pre_update`` with the forces of the previous
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
from nvalchemi_ase.ops.bfgs import BFGSState, bfgs_step, initial_hessian, pad_hessian


class BFGS(BaseDynamics):
    """Quasi-Newton relaxation with a dense Hessian, ``ase.optimize.BFGS``'s algorithm and defaults, batched.

    Parameters
    ----------
    model
        Batched model returning forces.
    maxstep
        Largest displacement of any atom in one step, Å (ASE's 0.2). A longer
        step is scaled down as a whole, keeping its direction.
    alpha
        Initial Hessian ``alpha·I``, eV/Å² (ASE's 70.0).
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
    The state lives on the batch: ``bfgs_hessian [B, D, D]`` (each system's
    3n×3n Hessian, padded to the widest system with ``alpha·I``),
    ``bfgs_positions0`` and ``bfgs_forces0 [N, 3]`` (the previous step's
    positions and forces) and ``bfgs_started [B]``, so it follows the systems
    when batches are sliced. Joining batches whose Hessians have different
    widths needs them padded to a common width first (the padding is reset
    to ``alpha·I`` every step, so zero padding is fine).

    Each step eigen-decomposes all Hessians with one batched
    ``torch.linalg.eigh``: O(B (3n)³) work, and on CUDA one device→host sync
    per step (eigh checks its convergence flags on the host).
    """

    default_fmax = 0.05
    cell_filter: CellFilter | None = None
    row_fields: tuple[str, ...] = ()

    state_fields = ("bfgs_hessian", "bfgs_positions0", "bfgs_forces0", "bfgs_started")

    def __init__(
        self,
        model: Model,
        maxstep: float = 0.2,
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
        if not maxstep > 0.0:
            raise ValueError(f"maxstep must be positive (Å), got {maxstep}")
        if not alpha > 0.0:
            raise ValueError(f"alpha must be positive (eV/Å²), got {alpha}")
        self.maxstep: float | torch.Tensor = float(maxstep)
        """A float, or ``[B]`` per-system values (the ASE look-alike's restored restart files)."""
        self.alpha = float(alpha)
        variable_cell.attach(self, cell_filter, ("bfgs_positions0", "bfgs_forces0"))

    @property
    def dt_internal(self) -> float:
        return self.dt  # BFGS has no time step; dt is an unused placeholder

    def init_state(self, batch: Batch) -> None:
        width = 3 * (int(batch.counts.max()) + (3 if self.cell_filter is not None else 0))
        if "bfgs_hessian" in batch.field_names():
            if batch.bfgs_hessian.shape[-1] < width:
                raise ValueError(
                    f"bfgs_hessian is {batch.bfgs_hessian.shape[-1]} wide, the largest system needs {width}"
                )
            variable_cell.init_state(self, batch)
            return  # carried over from an earlier run on this batch
        started = torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
        hessian = initial_hessian(batch.num_graphs, width, self.alpha, batch.positions)
        batch.add_field("bfgs_hessian", hessian, Scope.SYSTEM)
        batch.add_field("bfgs_positions0", torch.zeros_like(batch.positions), Scope.ATOM)
        batch.add_field("bfgs_forces0", torch.zeros_like(batch.positions), Scope.ATOM)
        batch.add_field("bfgs_started", started, Scope.SYSTEM)
        variable_cell.init_state(self, batch)

    def pre_update(self, batch: Batch) -> None:
        rows = Coordinates(batch, self.cell_filter)
        dofs = 3 * (rows.ptr[1:] - rows.ptr[:-1])
        hessian = pad_hessian(batch.bfgs_hessian, dofs, self.alpha)
        state = BFGSState(
            hessian, rows.state("bfgs_positions0"), rows.state("bfgs_forces0"), batch.bfgs_started
        )
        positions, state = bfgs_step(
            rows.positions, rows.forces, state, self.maxstep, rows.batch_idx, rows.ptr
        )
        rows.move(positions)
        rows.store("bfgs_positions0", state.positions0)
        rows.store("bfgs_forces0", state.forces0)
        batch.bfgs_hessian, batch.bfgs_started = state.hessian, state.started

    def masked_pre_update(self, batch: Batch, members: torch.Tensor) -> None:
        """The BFGS step of the ``members`` (``[B]`` bool) only: the others' Hessians are not decomposed.

        The members are gathered (one device→host read of the mask: the
        step's ``eigh`` waits for the device anyway), stepped, and their
        positions and state written back; nothing is copied for the others.
        """
        if self.cell_filter is not None:  # the generalized rows: held and restored as a whole
            super().masked_pre_update(batch, members)
            return
        systems = members.nonzero().squeeze(1)
        count = systems.numel()
        if count == batch.num_graphs:
            self.pre_update(batch)
            return
        if count == 0:
            return
        sizes = (batch.ptr[1:] - batch.ptr[:-1]).index_select(0, systems)
        ptr = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)])
        local = torch.arange(count, device=batch.device)
        batch_idx = torch.repeat_interleave(local, sizes)
        atoms = torch.arange(int(ptr[-1]), device=batch.device) - ptr.index_select(0, batch_idx)
        atoms = atoms + batch.ptr.index_select(0, systems.index_select(0, batch_idx))
        take = lambda values, rows: values.index_select(0, rows)  # noqa: E731
        hessian = pad_hessian(take(batch.bfgs_hessian, systems), 3 * sizes, self.alpha)
        state = BFGSState(
            hessian, take(batch.bfgs_positions0, atoms), take(batch.bfgs_forces0, atoms),
            take(batch.bfgs_started, systems),
        )  # fmt: skip
        maxstep = self.maxstep if isinstance(self.maxstep, float) else take(self.maxstep, systems)
        positions, state = bfgs_step(
            take(batch.positions, atoms), take(batch.forces, atoms), state, maxstep, batch_idx, ptr
        )
        put = lambda values, rows, new: values.index_copy(0, rows, new)  # noqa: E731
        batch.positions = put(batch.positions, atoms, positions)
        batch.bfgs_hessian = put(batch.bfgs_hessian, systems, state.hessian)
        batch.bfgs_positions0 = put(batch.bfgs_positions0, atoms, state.positions0)
        batch.bfgs_forces0 = put(batch.bfgs_forces0, atoms, state.forces0)
        batch.bfgs_started = put(batch.bfgs_started, systems, state.started)
