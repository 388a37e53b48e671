"""``FIRE``: ``ase.optimize.FIRE`` over the batched FIRE engine (per-system state)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms
from ase.optimize.fire import _forbid_maxmove
from ase.utils import deprecated

from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import FIRE as FIREEngine
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.optimize.optimize import Optimizer

__all__ = ["FIRE"]


class FIRE(Optimizer):
    """Fast inertial relaxation engine, ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default, as ASE's optimizers).
    dt, maxstep, dtmax, Nmin, finc, fdec, astart, fa, a
        ASE's FIRE parameters and defaults (``maxstep=None`` means 0.2 Å;
        ``maxstep`` bounds the norm of each system's whole displacement).
        ``maxmove`` is ASE's deprecated alias of ``maxstep`` (ASE's FutureWarning).
    downhill_check
        As ASE, per system: a system whose energy rose since its last step
        goes back to that step's positions and restarts its FIRE velocities
        (on the device, no host sync).
    position_reset_callback
        With ``downhill_check``: ``callback(optimizable, r_last, e, e_last)``,
        ASE's arguments, called on the host for each system that went uphill,
        before it goes back (``optimizable`` an ``OptimizableAtoms`` of that
        system's ``Atoms``, at the uphill positions; ``r_last`` a flat array).
        Only when given is the uphill mask read on the host (one sync a step).
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.

    Notes
    -----
    ``dt``, ``a`` and ``Nsteps`` keep their initial values here; the running
    per-system values live on the device (batch fields ``fire_dt``,
    ``fire_a``, ``fire_n``). A restart file holds ASE's ``(vel, dt)``; like
    ASE, reading one restores the velocities and starts again from ``dt``.
    With ``downhill_check``, a system read from a restart file records its
    energy on its first step and compares from the next (ASE has no
    ``e_last`` then and fails).
    """

    @deprecated(
        "Use of `maxmove` is deprecated. Use `maxstep` instead.",
        category=FutureWarning,
        callback=_forbid_maxmove,
    )
    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | None = None,
        logfile: IO | str | None = "-",
        trajectory: Any = None,
        dt: float = 0.1,
        maxstep: float | None = None,
        maxmove: float | None = None,
        dtmax: float = 1.0,
        Nmin: int = 5,
        finc: float = 1.1,
        fdec: float = 0.5,
        astart: float = 0.1,
        fa: float = 0.99,
        a: float = 0.1,
        downhill_check: bool = False,
        position_reset_callback: Callable | None = None,
        **kwargs: Any,
    ) -> None:
        self.dt = dt
        self.Nsteps = 0
        self.maxstep = self.defaults["maxstep"] if maxstep is None else maxstep
        self.dtmax = dtmax
        self.Nmin = Nmin
        self.finc = finc
        self.fdec = fdec
        self.astart = astart
        self.fa = fa
        self.a = a
        self.downhill_check = downhill_check
        self.position_reset_callback = position_reset_callback
        super().__init__(atoms, restart, logfile, trajectory, **kwargs)
        if downhill_check:
            self.engine.register_hook(_DownhillHook(self))

    def _make_engine(self, model: Any) -> FIREEngine:
        return FIREEngine(
            model,
            dt=self.dt,
            maxstep=self.maxstep,
            dtmax=self.dtmax,
            Nmin=self.Nmin,
            finc=self.finc,
            fdec=self.fdec,
            astart=self.astart,
            fa=self.fa,
            a=self.a,
            downhill_check=self.downhill_check,
            cell_filter=self.cell_filter,
        )

    def initialize(self) -> None:
        self.vel = None

    def read(self) -> None:
        """ASE's restart: the velocities of each system that has a file (dt restarts from ``dt``)."""
        batch = self.systems.batch
        self.engine.init_state(batch)
        velocities, started = batch.fire_velocities.clone(), batch.fire_n.clone()
        for b, path in enumerate(self._restart_paths):
            if path.is_file():
                vel, _ = self.load(b)
                rows = self.systems.rows(b)
                velocities[rows] = torch.as_tensor(np.reshape(vel, (-1, 3)), dtype=batch.dtype)
                started[b] = 0
        batch.fire_velocities, batch.fire_n = velocities, started
        self.vel = None

    def _restart_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"fire_velocities": batch.fire_velocities, "fire_dt": batch.fire_dt}

    def _restart_data(self, host: dict[str, np.ndarray], b: int) -> Any:
        return (host["fire_velocities"][self.systems.rows(b)].ravel(), float(host["fire_dt"][b]))

    # ------------------------------------------------------------------ downhill check
    def _call_position_reset(self, batch: Any) -> None:
        """ASE's ``position_reset_callback`` for each system the coming step sends back uphill."""
        assert self.position_reset_callback is not None
        engine = self.engine
        assert isinstance(engine, FIREEngine)
        uphill = engine.uphill(batch)
        if engine.converged is not None:
            uphill = uphill & ~engine.converged  # converged systems take no step
        energy = engine.downhill_energy(batch)
        mask, e, e_last = to_host([uphill.to(batch.dtype), energy, batch.fire_e_last])
        systems = np.flatnonzero(mask)
        if systems.size == 0:
            return
        forces = self._raw_forces if self._adjusts_forces and self._raw_forces is not None else batch.forces
        positions, r_last, raw_forces, raw_energy = to_host(
            [batch.positions, batch.fire_r_last, forces, batch.energy.view(-1)]
        )
        self.systems.refresh(positions, None, raw_energy, raw_forces, systems)
        for b in map(int, systems):
            rows, atoms = self.systems.rows(b), self.systems.atoms[b]
            optimizable = self.optimizables[b]  # one per system, kept, as ASE's self.optimizable
            self.position_reset_callback(optimizable, r_last[rows].ravel(), float(e[b]), float(e_last[b]))
            atoms.set_positions(positions[rows], apply_constraint=False)  # ASE resets whatever it did


class _DownhillHook:
    """Before each FIRE step: the constraint energy terms the check compares, and ASE's reset callback."""

    stage = DynamicsStage.BEFORE_PRE_UPDATE
    frequency = 1

    def __init__(self, owner: FIRE) -> None:
        self.owner = owner

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        owner, batch, engine = self.owner, ctx.batch, ctx.dynamics
        if owner._host_constraints is not None:  # ASE's get_potential_energy adds them
            extra = torch.as_tensor(owner._host_constraints.extra_energy, dtype=batch.dtype)
            engine.energy_offset = extra.to(batch.device)
        if owner.position_reset_callback is not None:
            owner._call_position_reset(batch)
