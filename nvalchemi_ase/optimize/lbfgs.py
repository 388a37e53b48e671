"""``LBFGS``: ``ase.optimize.LBFGS`` over the batched LBFGS engine (a history per system)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

from ase import Atoms

from nvalchemi_ase.dynamics import LBFGS as LBFGSEngine
from nvalchemi_ase.optimize.optimize import Optimizer

__all__ = ["LBFGS"]


class LBFGS(Optimizer):
    """Limited-memory BFGS with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default). ``restart`` files are not supported (NotImplementedError).
    maxstep
        Largest per-atom displacement per step, Å (``None``: 0.2; above 1.0
        raises ValueError, as ASE).
    memory
        Number of (Δx, Δg) pairs kept.
    damping
        Factor on each step.
    alpha
        Initial inverse Hessian ``I/alpha`` (eV/Å²).
    use_line_search
        Not supported: ``True`` raises NotImplementedError.
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | None = None,
        logfile: IO | str | None = "-",
        trajectory: Any = None,
        maxstep: float | None = None,
        memory: int = 100,
        damping: float = 1.0,
        alpha: float = 70.0,
        use_line_search: bool = False,
        **kwargs: Any,
    ) -> None:
        if use_line_search:
            raise NotImplementedError("LBFGS(use_line_search=True) is not supported by the batched LBFGS")
        if restart is not None:
            raise NotImplementedError("LBFGS(restart=...) is not supported by the batched LBFGS")
        self.maxstep = self.defaults["maxstep"] if maxstep is None else maxstep
        if self.maxstep > 1.0:
            raise ValueError(
                f"You are using a much too large value for the maximum step size: {self.maxstep:.1f} Angstrom"
            )
        self.memory, self.damping, self._alpha = memory, damping, alpha  # ASE keeps no `alpha` attribute
        self.use_line_search = use_line_search
        super().__init__(atoms, restart, logfile, trajectory, **kwargs)

    def _make_engine(self, model: Any) -> LBFGSEngine:
        return LBFGSEngine(
            model, maxstep=self.maxstep, memory=self.memory, damping=self.damping, alpha=self._alpha
        )
