"""``MDMin``: ``ase.optimize.MDMin`` over the batched MDMin engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any, ClassVar

from ase import Atoms

from nvalchemi_ase.dynamics import MDMin as MDMinEngine
from nvalchemi_ase.optimize.optimize import Optimizer

__all__ = ["MDMin"]


class MDMin(Optimizer):
    """Velocity-projected MD minimisation with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default). ``restart`` files are not supported (NotImplementedError).
    dt
        Time step of the unit-mass dynamics (``None`` or 0: 0.2, as ASE's ``dt or 0.2``).
    maxstep
        Largest per-atom displacement per step, Å (``None`` or 0: 0.2).
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.
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
        if restart is not None:
            raise NotImplementedError("MDMin(restart=...) is not supported by the batched MDMin")
        self.dt = dt or self.defaults["dt"]
        self.maxstep = maxstep or self.defaults["maxstep"]
        super().__init__(atoms, restart, logfile, trajectory, **kwargs)

    def _make_engine(self, model: Any) -> MDMinEngine:
        return MDMinEngine(model, dt=self.dt, maxstep=self.maxstep)
