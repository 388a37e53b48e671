"""``BFGS``: ``ase.optimize.BFGS`` over the batched BFGS engine (a Hessian per system)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

from ase import Atoms

from nvalchemi_ase.dynamics import BFGS as BFGSEngine
from nvalchemi_ase.optimize.optimize import Optimizer

__all__ = ["BFGS"]


class BFGS(Optimizer):
    """BFGS with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory, append_trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default). ``restart`` files are not supported (NotImplementedError).
    maxstep
        Largest per-atom displacement per step, Å (``None``: 0.2; ASE's
        warning above 1.0).
    alpha
        Initial Hessian ``alpha·I``, eV/Å² (``None``: 70.0).
    **kwargs
        ``master``, ``comm``, ``loginterval``.
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
        if restart is not None:
            raise NotImplementedError("BFGS(restart=...) is not supported by the batched BFGS")
        super().__init__(atoms, restart, logfile, trajectory, append_trajectory, **kwargs)

    def _make_engine(self, model: Any) -> BFGSEngine:
        return BFGSEngine(model, maxstep=self.maxstep, alpha=self.alpha)
