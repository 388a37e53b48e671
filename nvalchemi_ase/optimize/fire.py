"""``FIRE``: ``ase.optimize.FIRE`` over the batched FIRE engine (per-system state)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms
from ase.optimize.fire import _forbid_maxmove
from ase.utils import deprecated

from nvalchemi_ase.dynamics import FIRE as FIREEngine
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
        Not supported: ``True`` raises NotImplementedError (it would compare
        energies and reset positions per system on the host each step).
    position_reset_callback
        Only used with ``downhill_check``; accepted and stored.
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.

    Notes
    -----
    ``dt``, ``a`` and ``Nsteps`` keep their initial values here; the running
    per-system values live on the device (batch fields ``fire_dt``,
    ``fire_a``, ``fire_n``). A restart file holds ASE's ``(vel, dt)``; like
    ASE, reading one restores the velocities and starts again from ``dt``.
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
        if downhill_check:
            raise NotImplementedError(
                "FIRE(downhill_check=True) is not supported by the batched FIRE; use ase.optimize.FIRE"
            )
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
