"""``LookalikeDynamics``: what ASE's ``BaseDynamics`` gives, over a batched engine.

The look-alike owns the systems (:class:`~nvalchemi_ase._lookalike.systems.Systems`),
an engine from :mod:`nvalchemi_ase.dynamics` built by the subclass
(:meth:`LookalikeDynamics._make_engine`), ASE's observer list, trajectory
files and constraint routing. One engine hook fires after every step; it
decides on the host, from the step count alone, whether an observer, the
trajectory or a log line is due, and only then copies the state to the
``Atoms`` (one device→host transfer). Steps where nothing is due cost no sync.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.parallel import world
from ase.utils import IOContext

from nvalchemi_ase._lookalike.bands import Bands, is_band_input
from nvalchemi_ase._lookalike.constraints import device_constraints, plan_constraints, release_host_systems
from nvalchemi_ase._lookalike.host_constraints import HostConstraintHook
from nvalchemi_ase._lookalike.outputs import TrajectoryOutput
from nvalchemi_ase._lookalike.systems import Systems
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import BaseDynamics
from nvalchemi_ase.dynamics.hooks import FreezeAtomsHook
from nvalchemi_ase.hooks.constraints import ConstraintHook
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage

__all__ = ["LookalikeDynamics"]

Observer = tuple[Callable[..., Any], int, tuple, dict[str, Any]]


class _StepHook:
    """The look-alike's engine hook: keeps raw forces (AFTER_COMPUTE) and reports each step (AFTER_STEP)."""

    stage = None
    stages = (DynamicsStage.AFTER_COMPUTE, DynamicsStage.AFTER_STEP)
    frequency = 1

    def __init__(self, owner: LookalikeDynamics) -> None:
        self.owner = owner

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        if stage == DynamicsStage.AFTER_COMPUTE:
            self.owner._keep_raw_forces(ctx.batch)
        else:
            self.owner._after_step()


class LookalikeDynamics(IOContext):
    """Common base of the MD and optimizer look-alikes (ASE's ``BaseDynamics``).

    Parameters
    ----------
    atoms
        One ``ase.Atoms`` or a list of them, advanced together in one batch.
    trajectory
        ``None``, a path (one ``.traj`` per system for a list, see
        :func:`~nvalchemi_ase._lookalike.outputs.system_paths`), an open writer
        (one system), or a list of paths or writers (one per system).
    append_trajectory
        Append to existing trajectory files instead of replacing them.
    master, comm
        As ASE (file writing on rank 0 of ``comm``).
    loginterval
        Every how many steps the trajectory (and the MD logger) write.
    """

    md: ClassVar[bool] = True
    """MD (momenta are state, constraints as ase.md) or optimizer (forces projected)."""
    rederive_velocities: ClassVar[bool] = True
    """MD with constraints: velocities from the constrained displacement (RATTLE), else set as momenta."""

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        trajectory: Any = None,
        append_trajectory: bool = False,
        master: bool | None = None,
        comm: Any = world,
        *,
        loginterval: int = 1,
    ) -> None:
        self.systems: Systems | Bands = (
            Bands(atoms) if is_band_input(atoms) else Systems(atoms, momenta=self.md, filters=not self.md)
        )
        self.atoms = atoms
        self.observers: list[Observer] = []
        self.nsteps = 0
        self.max_steps = 0
        self.comm = comm
        self._master = master
        self._orig_trajectory = trajectory
        self._trajectories = TrajectoryOutput(trajectory, len(self.systems), append_trajectory, master, comm)
        if self._trajectories:
            self.attach(self._traj_write_image, interval=loginterval, description={"interval": loginterval})
        single_path = trajectory is not None and not hasattr(trajectory, "write")
        self.trajectory = (
            Path(trajectory) if single_path and isinstance(trajectory, str | Path) else trajectory
        )
        self._active = np.ones(len(self.systems), dtype=bool)
        self._skip_frames: set[int] = set()
        self._stale = True
        self._fresh_step = -1
        self._raw_forces: torch.Tensor | None = None
        self.engine = self._make_engine(self.systems.model)
        self._install_hooks()

    # ------------------------------------------------------------------ for subclasses
    def _make_engine(self, model: Any) -> BaseDynamics:
        """The engine this look-alike drives (subclasses build it from their ASE parameters)."""
        raise NotImplementedError

    def todict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _report_each_step(self) -> bool:
        """Whether every step is reported (optimizers: log lines, restart files)."""
        return False

    def _extra_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        """Device values to bring along whenever the state is reported (optimizers: convergence, fmax)."""
        return {}

    def _write_log(self, host: dict[str, np.ndarray]) -> None:
        """Write this step's log lines from the reported host values."""

    # ------------------------------------------------------------------ hooks
    def _install_hooks(self) -> None:
        batch, plan = self.systems.batch, plan_constraints(self.systems.atoms, self.systems.starts)
        self.constraint_plan = plan
        self._adjusts_forces = bool(plan.host_systems) or (not self.md and plan.any)
        self.engine.register_hook(_StepHook(self))
        if isinstance(self.systems, Bands):
            for hook in self.systems.hooks():
                self.engine.register_hook(hook)
        if plan.frozen:
            self.engine.register_hook(
                FreezeAtomsHook(
                    zero_forces=not self.md, follow_cell=getattr(self.systems, "has_filters", False)
                )
            )
        self.engine.constraints = device_constraints(plan, batch)
        if plan.native:
            self.engine.register_hook(
                ConstraintHook(self.engine.constraints, self.md, self.rederive_velocities)
            )
        self._host_constraints: HostConstraintHook | None = None
        if plan.host_systems:
            release_host_systems(batch, plan)
            self._host_constraints = HostConstraintHook(
                self.systems.atoms,
                plan.host_systems,
                self.systems.starts,
                self.md,
                batch.device,
                self.rederive_velocities,
            )
            self.engine.register_hook(self._host_constraints)

    def _keep_raw_forces(self, batch: Any) -> None:
        """Forces before constraints change them: what the calculator would cache (and trajectories hold)."""
        if self._adjusts_forces:
            self._raw_forces = batch.forces.clone()

    def _after_step(self) -> None:
        """After each engine step: count it; on steps where something is due, report and call observers."""
        self.nsteps += 1
        observe = self._observers_due(self.nsteps)
        if observe or self._report_each_step():
            self._report(state=observe, log=self._report_each_step(), observe=observe)

    def _report(
        self, state: bool, log: bool, observe: bool, extras: bool = True, everyone: bool = False
    ) -> None:
        """One device→host transfer, then the Atoms refresh, log lines and observers.

        ``everyone``: treat every system as running (step 0, final refresh);
        otherwise an optimizer's converged systems are left out.
        """
        batch = self.systems.batch
        tensors = self._extra_tensors(batch) if extras else {}
        if state:
            forces = (
                self._raw_forces if self._adjusts_forces and self._raw_forces is not None else batch.forces
            )
            tensors.update(positions=batch.positions, energy=batch.energy.view(-1), forces=forces)
            tensors.update(self.systems.report_tensors())
            if self.md:
                tensors["velocities"] = batch.velocities
        host = dict(zip(tensors, to_host(list(tensors.values())), strict=True))
        if everyone:
            self._active = np.ones(len(self.systems), dtype=bool)
        elif "converged" in host:
            self._active = host["converged"] == 0.0
        if state:
            systems = np.flatnonzero(self._active)
            self.systems.refresh(
                host["positions"], host.get("velocities"), host["energy"], host["forces"], systems, host
            )
            if systems.size == len(self.systems):
                self._fresh_step = self.nsteps
        if log:
            self._write_log(host)
        if observe:
            self.call_observers()
            self._pull_edits()

    # ------------------------------------------------------------------ state movement
    def _pull_edits(self) -> None:
        """Host edits of the Atoms go to the device; moved positions need new forces."""
        if self.systems.pull_edits():
            self._stale = True
            self._fresh_step = -1

    def _step(self) -> None:
        """One engine step (its hook counts ``nsteps``, reports and calls the observers due).

        Interrupted before the step was done, the engine puts the batch back as
        it was; the forces kept for the Atoms go back with it.
        """
        raw_forces, count = self._raw_forces, self.engine.step_count
        try:
            self.engine.step(self.systems.batch)
        except BaseException:
            if self.engine.step_count == count:
                self._raw_forces = raw_forces
            raise

    def _guarded(self, loop: Iterator[Any]) -> Iterator[Any]:
        """``loop`` (a run or irun), leaving the Atoms at the last completed step however it ends.

        An exception, ``KeyboardInterrupt`` or an ``irun`` left early: the
        engine keeps its batch at the last completed step, ``nsteps`` counts
        exactly those steps, and the Atoms (positions, momenta, calculator
        results) are brought to them before the exception goes on.
        """
        try:
            yield from loop
        except BaseException:  # GeneratorExit included: the Atoms are then current already
            batch = self.systems.batch
            if batch.forces is not None and batch.energy is not None:
                with contextlib.suppress(Exception):  # the exception in flight is the one to see
                    self._refresh_all()
            raise

    def _prime(self) -> None:
        """Forces for the current positions (with the constraint hooks), when they are not known."""
        if not self._stale:
            return
        self.engine.prime(self.systems.batch, recompute=True)
        self._stale = False

    def _refresh_all(self) -> None:
        """Every system's Atoms up to date (once per step at most)."""
        if self._fresh_step == self.nsteps:
            return
        active = self._active
        try:
            self._report(state=True, log=False, observe=False, extras=False, everyone=True)
        finally:
            self._active = active

    # ------------------------------------------------------------------ ASE's observer API
    def attach(self, function: Any, interval: int = 1, *args: Any, **kwargs: Any) -> None:
        """Call ``function(*args, **kwargs)`` every ``interval`` steps (and at step 0).

        ``interval <= 0``: only at step ``abs(interval)``. An object that is
        not callable but has ``write`` (a trajectory writer) is written to.
        """
        if not callable(function):
            function = function.write
        self.observers.append((function, interval, args, kwargs))

    def insert_observer(self, function: Any, position: int = 0, interval: int = 1, *args: Any, **kwargs: Any):
        """As :meth:`attach`, inserted at ``position`` in the observer list."""
        if not callable(function):
            function = function.write
        self.observers.insert(position, (function, interval, args, kwargs))

    def _observers_due(self, nsteps: int) -> bool:
        return any(_fires(interval, nsteps) for _, interval, _, _ in self.observers)

    def call_observers(self) -> None:
        """Call the observers due at the current ``nsteps``, in order (as ASE)."""
        for function, interval, args, kwargs in self.observers:
            if _fires(interval, self.nsteps):
                function(*args, **kwargs)

    def get_number_of_steps(self) -> int:
        return self.nsteps

    def _traj_write_image(self, description: dict[str, Any]) -> None:
        """The trajectory observer: one frame per running system."""
        for b in np.flatnonzero(self._active):
            if int(b) not in self._skip_frames:
                self._trajectories.write(int(b), self.systems.frame(int(b)), self.todict() | description)


def _fires(interval: int, nsteps: int) -> bool:
    """ASE's rule: every ``interval`` steps (step 0 included), or only at step ``-interval``."""
    if interval > 0:
        return nsteps % interval == 0
    return nsteps == abs(interval)
