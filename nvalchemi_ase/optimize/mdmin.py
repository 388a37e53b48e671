"""``MDMin``: ``ase.optimize.MDMin`` over the batched MDMin engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any, ClassVar

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.dynamics import MDMin as MDMinEngine
from nvalchemi_ase.optimize.optimize import Optimizer, restart_array

__all__ = ["MDMin"]


class MDMin(Optimizer):
    """Velocity-projected MD minimisation with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default).
    dt
        Time step of the unit-mass dynamics (``None`` or 0: 0.2, as ASE's ``dt or 0.2``).
    maxstep
        Largest per-atom displacement per step, Å (``None`` or 0: 0.2).
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.

    Notes
    -----
    A restart file holds ASE's ``(v, dt)`` (flat velocities, the step
    parameter). As ASE, reading one restores the velocities (the next step
    projects them, as any step but the first) and keeps the ``dt`` argument:
    ASE's ``__init__`` sets ``dt`` after ``read()``, so the stored ``dt`` is
    never used. Systems without a file start fresh.
    """

    defaults: ClassVar[dict[str, Any]] = {**Optimizer.defaults, "dt": 0.2}

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | None = None,
        logfile: IO | str | None = "-",
        trajectory: Any = None,
        dt: float | None = None,
        maxstep: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.dt = dt or self.defaults["dt"]
        self.maxstep = maxstep or self.defaults["maxstep"]
        super().__init__(atoms, restart, logfile, trajectory, **kwargs)

    def _make_engine(self, model: Any) -> MDMinEngine:
        return MDMinEngine(model, dt=self.dt, maxstep=self.maxstep, cell_filter=self.cell_filter)

    def read(self) -> None:
        """ASE's restart: the velocities of each system with a file (the stored ``dt`` unused, as ASE)."""
        batch = self.systems.batch
        self.engine.init_state(batch)
        velocities, started = batch.mdmin_velocities.clone(), batch.mdmin_started.clone()
        for b, path in enumerate(self._restart_paths):
            if path.is_file():
                v, _ = self.load(b)
                rows = self.systems.rows(b)
                velocities[rows] = restart_array(v, (len(self.systems.atoms[b]), 3), batch, path)
                started[b] = True
        batch.mdmin_velocities, batch.mdmin_started = velocities, started

    def _restart_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        return {"mdmin_velocities": batch.mdmin_velocities}

    def _restart_data(self, host: dict[str, np.ndarray], b: int) -> Any:
        return (host["mdmin_velocities"][self.systems.rows(b)].ravel(), float(self.dt))
