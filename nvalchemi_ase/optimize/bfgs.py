"""``BFGS``: ``ase.optimize.BFGS`` over the batched BFGS engine (a Hessian per system)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.dynamics import BFGS as BFGSEngine
from nvalchemi_ase.optimize.optimize import Optimizer, restart_array

__all__ = ["BFGS"]


class BFGS(Optimizer):
    """BFGS with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory, append_trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default).
    maxstep
        Largest per-atom displacement per step, Å (``None``: 0.2; ASE's
        warning above 1.0).
    alpha
        Initial Hessian ``alpha·I``, eV/Å² (``None``: 70.0).
    **kwargs
        ``master``, ``comm``, ``loginterval``.

    Notes
    -----
    A restart file holds ASE's ``(H, pos0, forces0, maxstep)`` (the 3n×3n
    Hessian, the previous step's flat positions and forces, the step limit).
    As ASE, reading one restores all four, ``maxstep`` included: it replaces
    the ``maxstep`` argument for that system (``self.maxstep`` is the restored
    value when every system has the same one, else the per-system list).
    Systems without a file start fresh.
    """

    defaults: ClassVar[dict[str, Any]] = {**Optimizer.defaults, "alpha": 70.0}

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | Path | None = None,
        logfile: IO | str | Path | None = "-",
        trajectory: Any = None,
        append_trajectory: bool = False,
        maxstep: float | None = None,
        alpha: float | None = None,
        **kwargs: Any,
    ) -> None:
        self.maxstep = self.defaults["maxstep"] if maxstep is None else maxstep
        if self.maxstep > 1.0:
            warnings.warn(
                f"You are using a *very* large value for the maximum step size: {self.maxstep:.1f} Å",
                stacklevel=2,
            )
        self.alpha = self.defaults["alpha"] if alpha is None else alpha
        super().__init__(atoms, restart, logfile, trajectory, append_trajectory, **kwargs)

    def _make_engine(self, model: Any) -> BFGSEngine:
        return BFGSEngine(model, maxstep=self.maxstep, alpha=self.alpha, cell_filter=self.cell_filter)

    def initialize(self) -> None:
        self._maxsteps = [float(self.maxstep)] * len(self.systems)

    def read(self) -> None:
        """ASE's restart: Hessian, previous positions and forces, ``maxstep``, of each system with a file."""
        self.initialize()
        batch = self.systems.batch
        self.engine.init_state(batch)
        hessian, started = batch.bfgs_hessian.clone(), batch.bfgs_started.clone()
        positions0, forces0 = batch.bfgs_positions0.clone(), batch.bfgs_forces0.clone()
        for b, path in enumerate(self._restart_paths):
            if not path.is_file():
                continue
            data = self.load(b)
            if len(data) != 4:
                raise ValueError(
                    f"{path}: a BFGS restart holds (H, pos0, forces0, maxstep), got {len(data)} items"
                )
            rows, dofs = self.systems.rows(b), 3 * len(self.systems.atoms[b])
            hessian[b, :dofs, :dofs] = restart_array(data[0], (dofs, dofs), batch, path)
            positions0[rows] = restart_array(data[1], (dofs // 3, 3), batch, path)
            forces0[rows] = restart_array(data[2], (dofs // 3, 3), batch, path)
            started[b] = True
            self._maxsteps[b] = float(data[3])
        batch.bfgs_hessian, batch.bfgs_started = hessian, started
        batch.bfgs_positions0, batch.bfgs_forces0 = positions0, forces0
        self._apply_maxsteps()

    def _apply_maxsteps(self) -> None:
        """The restored step limits on the engine: one float when all agree, else one per system."""
        engine = self.engine
        assert isinstance(engine, BFGSEngine)
        if len(set(self._maxsteps)) == 1:
            self.maxstep = engine.maxstep = self._maxsteps[0]
        else:
            self.maxstep = list(self._maxsteps)
            batch = self.systems.batch
            engine.maxstep = torch.tensor(self._maxsteps, dtype=batch.dtype, device=batch.device)

    def _restart_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        return {
            "bfgs_hessian": batch.bfgs_hessian,
            "bfgs_positions0": batch.bfgs_positions0,
            "bfgs_forces0": batch.bfgs_forces0,
        }

    def _restart_data(self, host: dict[str, np.ndarray], b: int) -> Any:
        rows, dofs = self.systems.rows(b), 3 * len(self.systems.atoms[b])
        return (
            host["bfgs_hessian"][b, :dofs, :dofs],
            host["bfgs_positions0"][rows].ravel(),
            host["bfgs_forces0"][rows].ravel(),
            self._maxsteps[b],
        )
