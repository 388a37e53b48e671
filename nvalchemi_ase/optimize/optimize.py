"""``Optimizer``: ASE's optimizer base class over a batched engine.

Same constructor, attributes, log format and run loop as
``ase.optimize.optimize.Optimizer`` (3.29). Every system has its own
optimizer state and its own convergence; a converged system stops moving
(and stops writing frames and log lines) while the others go on, so each
system gets what ASE gives when optimizing it alone.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.parallel import world
from ase.utils.abc import Optimizable

from nvalchemi_ase._lookalike.base import LookalikeDynamics
from nvalchemi_ase._lookalike.optimizable import SystemsOptimizable, optimizable_of
from nvalchemi_ase._lookalike.outputs import OptimizerLog, system_paths
from nvalchemi_ase.dynamics import ConvergenceHook, variable_cell
from nvalchemi_ase.dynamics.convergence import QUANTITIES
from nvalchemi_ase.dynamics.variable_cell import CellFilter, generalized_max_force
from nvalchemi_ase.ops.thermo import max_force

__all__ = ["DEFAULT_MAX_STEPS", "Optimizer", "RestartError"]

DEFAULT_MAX_STEPS = 100_000_000


class RestartError(RuntimeError):
    """A restart file that cannot be read (as ``ase.optimize.optimize.RestartError``)."""


def restart_array(values: Any, shape: tuple[int, ...], batch: Any, path: Any) -> torch.Tensor:
    """A restart file's array as a tensor of ``shape`` on the batch's device and dtype.

    ASE stores flat arrays (``(3n,)``) or ``(n, 3)`` ones; both fit. A wrong
    size (a file written for another system) raises ValueError.
    """
    array = np.asarray(values, dtype=float)
    if array.size != int(np.prod(shape)):
        raise ValueError(
            f"{path}: an array of {array.size} values where {shape} was expected (another system?)"
        )
    return torch.as_tensor(array.reshape(shape), dtype=batch.dtype, device=batch.device)


class Optimizer(LookalikeDynamics):
    """Base class of the optimizer look-alikes (``ase.optimize.optimize.Optimizer``).

    Parameters
    ----------
    atoms
        One ``ase.Atoms`` or a list of them (optimized together, each on its own).
    restart
        JSON file(s) holding the optimizer state, written after every step and
        read at construction when present (one per system for a list, named
        as the trajectories are).
    logfile
        ``None``, ``'-'`` (stdout), a path or an open file: ASE's log lines
        (see :class:`~nvalchemi_ase._lookalike.outputs.OptimizerLog` for lists).
    trajectory
        Path, open writer, or list of them (one ``.traj`` per system for a list).
    append_trajectory, master, comm, loginterval
        As ASE (``loginterval`` thins the trajectory, not the log).
    """

    md = False
    defaults: ClassVar[dict[str, Any]] = {"maxstep": 0.2}

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | Path | None = None,
        logfile: IO | str | Path | None = None,
        trajectory: Any = None,
        append_trajectory: bool = False,
        *,
        master: bool | None = None,
        comm: Any = world,
        loginterval: int = 1,
    ) -> None:
        super().__init__(atoms, trajectory, append_trajectory, master, comm, loginterval=loginterval)
        self.optimizables: list[Optimizable] = [optimizable_of(system) for system in self.systems.atoms]
        """ASE's ``Optimizable`` of each system (``atoms.__ase_optimizable__()``)."""
        self.optimizable: Optimizable = (
            self.optimizables[0] if isinstance(atoms, Atoms) else SystemsOptimizable(self.optimizables)
        )
        """As ASE's: the system's own for one ``Atoms``; for a list, all systems as one problem."""
        if getattr(self.systems, "has_filters", False) and restart is not None:
            raise NotImplementedError(
                f"{type(self).__name__}: restart files with cell filters are not supported"
            )
        self.logfile = OptimizerLog(logfile, len(self.systems), comm)
        self.restart = restart
        self.fmax: float | None = None
        self._restart_paths = [] if restart is None else system_paths(restart, len(self.systems))
        if any(path.is_file() for path in self._restart_paths):
            self.read()
            self.comm.barrier()
        else:
            self.initialize()

    # ------------------------------------------------------------------ for subclasses
    @property
    def cell_filter(self) -> CellFilter | None:
        """What the engine is given for the systems' ASE cell filters (their settings are batch fields)."""
        return CellFilter() if getattr(self.systems, "has_filters", False) else None

    def initialize(self) -> None:
        """Set up the optimizer state (no restart file)."""

    def read(self) -> None:
        """Load the state from the restart file(s)."""
        raise NotImplementedError(f"{type(self).__name__} cannot read restart files")

    def _restart_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        """Device state written to the restart files after each step."""
        return {}

    def _restart_data(self, host: dict[str, np.ndarray], b: int) -> Any:
        """What ``dump`` writes for system ``b`` (ASE's restart content)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ restart files
    def dump(self, data: Any, b: int = 0) -> None:
        """Write system ``b``'s restart data (rank 0)."""
        from ase.io.jsonio import write_json

        if self.comm.rank == 0 and self._restart_paths:
            with open(self._restart_paths[b], "w") as fd:
                write_json(fd, data)

    def load(self, b: int = 0) -> Any:
        """Read system ``b``'s restart data."""
        from ase.io.jsonio import read_json

        path = self._restart_paths[b]
        with open(path) as fd:
            try:
                return read_json(fd, always_array=False)
            except Exception as error:
                raise RestartError(
                    f"Could not decode restart file as JSON.  You may need to delete the restart file {path}"
                ) from error

    # ------------------------------------------------------------------ reporting
    def _report_each_step(self) -> bool:
        return bool(self.logfile) or self.restart is not None

    def _extra_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        assert self.engine.converged is not None
        tensors = {
            "converged": self.engine.converged.to(batch.dtype),
            "log_energy": batch.energy.view(-1),
            "fmax": max_force(batch.forces, batch.batch_idx, batch.num_graphs, batch.ptr),
        }
        if getattr(
            self.systems, "has_filters", False
        ):  # what ASE logs for a filter: E + pV and its (n + 3)-row fmax
            tensors.update(log_energy=variable_cell.enthalpy(batch), fmax=generalized_max_force(batch))
        if self.restart is not None:
            tensors.update(self._restart_tensors(batch))
        return tensors

    def _write_log(self, host: dict[str, np.ndarray]) -> None:
        extra = self._host_constraints.extra_energy if self._host_constraints is not None else 0.0
        energy = host["log_energy"] + extra
        rows = [(int(b), float(energy[b]), float(host["fmax"][b])) for b in np.flatnonzero(self._active)]
        self.logfile.write_rows(type(self).__name__, self.nsteps, rows)
        if self.restart is not None and self.nsteps > 0:
            for b, *_ in rows:
                self.dump(self._restart_data(host, b), b)

    # ------------------------------------------------------------------ the run loop
    def irun(self, fmax: float = 0.05, steps: int = DEFAULT_MAX_STEPS) -> Iterator[np.bool_]:
        """Run as a generator: yields whether all systems converged, before the first step and after each.

        The ``Atoms`` are up to date at every yield.
        """
        self.fmax = fmax
        return self._guarded(self._loop(steps, public=True))

    def run(self, fmax: float = 0.05, steps: int = DEFAULT_MAX_STEPS) -> np.bool_:
        """Optimize until every system's largest force is below ``fmax`` (eV/Å, strict) or ``steps`` steps.

        Returns whether every system converged (a numpy bool, as ASE).
        """
        self.fmax = fmax
        *_, converged = self._guarded(self._loop(steps, public=False))
        self._refresh_all()
        return converged

    def _loop(self, steps: int, public: bool) -> Iterator[np.bool_]:
        self.max_steps = self.nsteps + steps
        self._pull_edits()
        self._prime()
        self._set_threshold()
        if self.nsteps == 0:
            self._report_step_zero()
        converged = self._all_converged()
        yield converged
        while not converged and self.nsteps < self.max_steps:
            if public:
                self._pull_edits()
            if self._stale:
                self._prime()
                self._set_threshold()
            self._step()  # the step hook counts nsteps, logs and calls the observers due
            converged = np.bool_(self.engine.done)  # the step's convergence check read it
            if public:
                self._refresh_all()
            yield converged

    def _set_threshold(self) -> None:
        """This run's ``fmax`` as the engine's criterion, evaluated now for every system."""
        assert self.fmax is not None
        self.engine.set_convergence(ConvergenceHook.from_fmax(float(self.fmax)))

    def _all_converged(self) -> np.bool_:
        return np.bool_(self.engine.all_converged())

    def _report_step_zero(self) -> None:
        """Step 0: a log line for every system, then the observers (ASE skips them when appending)."""
        nonempty = {
            b for b in range(len(self.systems)) if self._trajectories and not self._trajectories.is_empty(b)
        }
        observe = not (self._trajectories and len(nonempty) == len(self.systems))
        self._skip_frames = nonempty
        try:
            self._report(state=True, log=self._report_each_step(), observe=observe, everyone=True)
        finally:
            self._skip_frames = set()

    # ------------------------------------------------------------------ ASE's API
    def todict(self) -> dict[str, Any]:
        description: dict[str, Any] = {
            "type": "optimization",
            "optimizer": type(self).__name__,
            "restart": None if self.restart is None else str(self.restart),
        }
        for attr in ("maxstep", "alpha", "max_steps", "fmax"):
            if hasattr(self, attr):
                description[attr] = getattr(self, attr)
        return description

    def converged(self, forces: np.ndarray | None = None, *, gradient: np.ndarray | None = None) -> np.bool_:
        """Whether every system's largest (constrained) force is below ``fmax``."""
        if gradient is not None:
            warnings.warn("The gradient keyword will be removed in 3.29.0", FutureWarning, stacklevel=2)
        elif forces is not None:
            gradient = -np.asarray(forces).ravel()
        else:
            batch = self.systems.batch
            largest = QUANTITIES["fmax"](batch).max()
            return np.bool_(bool(largest < float(self.fmax or 0.0)))
        return self.gradient_converged(gradient)

    def gradient_converged(self, gradient: np.ndarray) -> np.bool_:
        """ASE's test on a flat gradient (all systems' atoms): largest row norm < ``fmax``."""
        assert gradient.ndim == 1
        return np.bool_(self.optimizable.converged(gradient, float(self.fmax or 0.0)))
