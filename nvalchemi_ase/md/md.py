"""``MolecularDynamics``: ASE's MD base class over a batched engine.

Same constructor, attributes and run loop as ``ase.md.md.MolecularDynamics``
(3.29); a subclass only says which engine it drives (``_make_engine``) and
which of its parameters ``todict`` reports.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms
from ase.md.md import process_temperature
from ase.parallel import world

from nvalchemi_ase._lookalike.base import LookalikeDynamics
from nvalchemi_ase._lookalike.parameters import engine_value
from nvalchemi_ase.md.logger import attach_md_logger
from nvalchemi_ase.units import internal_to_fs

__all__ = ["MolecularDynamics", "process_temperature"]


class MolecularDynamics(LookalikeDynamics):
    """Base class of the MD look-alikes (``ase.md.md.MolecularDynamics``).

    Parameters
    ----------
    atoms
        One ``ase.Atoms`` or a list of them (advanced together on the
        device of ``atoms[0].calc``).
    timestep
        Time step in ASE time units (``2 * ase.units.fs``).
    trajectory
        Path, open writer, or list of them (one ``.traj`` per system for a
        list: a path containing ``{}`` is formatted with the system index,
        any other gets ``_<index>`` before its extension).
    logfile
        ``'-'``, a path or an open file: ASE's ``MDLogger`` columns (a list
        of systems: one file per system for a path, one line per system and
        step, in system order, for a stream).
    loginterval
        Every how many steps the trajectory and the logger write.
    append_trajectory, master, comm
        As ASE.

    Notes
    -----
    ``masses`` is ``(N, 1)`` as in ASE (all systems' atoms, in order, for a
    list). ``dt`` can be changed between runs.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        trajectory: Any = None,
        logfile: IO | str | None = None,
        loginterval: int = 1,
        *,
        append_trajectory: bool = False,
        master: bool | None = None,
        comm: Any = world,
    ) -> None:
        self._dt = float(timestep)
        for system in [atoms] if isinstance(atoms, Atoms) else atoms:
            if isinstance(system, Atoms) and not system.has("momenta"):
                system.set_momenta(np.zeros([len(system), 3]))
        super().__init__(atoms, trajectory, append_trajectory, master, comm, loginterval=loginterval)
        self.masses = np.concatenate([a.get_masses() for a in self.systems.atoms]).reshape(-1, 1)
        self.logfile = None
        if logfile:
            attach_md_logger(self, logfile, loginterval)

    # ------------------------------------------------------------------ parameters
    @property
    def dt(self) -> float:
        """Time step in ASE time units."""
        return self._dt

    @dt.setter
    def dt(self, timestep: float) -> None:
        if hasattr(self, "engine"):
            # checked there (an error changes nothing); the engine's thermostat refreshes its coefficients
            self.engine.dt = internal_to_fs(float(timestep))
        self._dt = float(timestep)

    def _per_system_value(self, values: Any, name: str) -> float | torch.Tensor:
        """An engine parameter: a float, or one value per system (per-atom values must agree per system)."""
        return engine_value(values, name, [len(atoms) for atoms in self.systems.atoms])

    def _forbid_constraints(self, reason: str) -> None:
        """Raise NotImplementedError naming the first system that carries a constraint."""
        for index, atoms in enumerate(self.systems.atoms):
            if atoms.constraints:
                raise NotImplementedError(f"atoms[{index}] has constraints: {reason}")

    def todict(self) -> dict[str, Any]:
        return {"type": "molecular-dynamics", "md-type": type(self).__name__, "timestep": self.dt}

    # ------------------------------------------------------------------ the run loop
    def irun(self, steps: int = 50) -> Iterator[bool]:
        """Run as a generator: yields after step 0 and after every step (``nsteps == max_steps``).

        The ``Atoms`` are up to date at every yield, and edits made to them
        between yields are taken into account.
        """
        return self._guarded(self._loop(steps, public=True))

    def run(self, steps: int = 50) -> bool:
        """Run ``steps`` steps; returns True (as ASE). The ``Atoms`` are up to date afterwards."""
        *_, converged = self._guarded(self._loop(steps, public=False))
        self._refresh_all()
        return converged

    def _loop(self, steps: int, public: bool) -> Iterator[bool]:
        self.max_steps = self.nsteps + steps
        self._pull_edits()
        self._prime()
        if self.nsteps == 0:
            self._refresh_all()
            self.call_observers()
            self._pull_edits()
        yield self.nsteps == self.max_steps
        while self.nsteps < self.max_steps:
            if public:
                self._pull_edits()
            self._prime()
            self._step()  # the step hook counts nsteps and calls the observers due
            if public:
                self._refresh_all()
            yield self.nsteps == self.max_steps

    def get_time(self) -> float:
        """``nsteps * dt`` in ASE time units."""
        return self.nsteps * self.dt

    def converged(self, gradient: Any = None) -> bool:
        """MD is 'converged' when the number of steps asked for is reached."""
        return self.nsteps >= self.max_steps

    def log(self) -> None:
        """ASE's hook for subclasses; the MD logger is an observer."""
        return None
