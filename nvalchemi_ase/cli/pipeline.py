"""The command line's job: relax then MD every structure of a file, with inflight batching.

Outputs in the output folder:

* ``trajectories/system_00000.traj`` ... one ASE trajectory per input structure;
* ``final.extxyz``: the finished structures, in input order, with energy and forces;
* ``log.csv``: one row per system every ``log_interval`` steps (step, system,
  status, energy, fmax, temperature);
* ``summary.json`` and the printed summary: what finished, what did not
  converge, what was set aside (index and reason) and, after Ctrl-C, what did
  not finish.

Trajectory frames carry ``info["step"]`` (fused steps completed) and ``info["stage"]``
(0 relaxing, 1 MD, 2 done, with ``--no-relax`` or ``--no-md`` counting from 0).
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import torch
from ase import Atoms

from nvalchemi_ase.cli.checkpointing import Checkpointing
from nvalchemi_ase.cli.checks import SetAside
from nvalchemi_ase.dynamics import (
    FIRE,
    NVE,
    Andersen,
    Bussi,
    ConvergenceHook,
    FusedStage,
    InflightSampler,
    LangevinBAOAB,
    NoseHooverChainNVT,
    NVTBerendsen,
    NVTLangevin,
    TrajectorySink,
)
from nvalchemi_ase.dynamics.base import BaseDynamics, DynamicsStage
from nvalchemi_ase.dynamics.variable_cell import CellFilter
from nvalchemi_ase.hooks import LoggingHook
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import segment_broadcast, segment_sum


@dataclass
class Settings:
    """Everything a run needs besides the structures and the model."""

    output: Path
    relax: bool = True
    md: bool = True
    fmax: float = 0.05
    relax_steps: int = 500
    relax_cell: bool = False
    """Relax the cells too (FIRE with a Frechet cell filter), to ``pressure``."""
    pressure: float = 0.0
    """GPa, the pressure the cells relax to (with ``relax_cell``)."""
    ensemble: str = "langevin"
    temperature: float = 300.0
    timestep: float = 2.0
    md_steps: int = 200
    friction: float = 0.01
    tau: float = 100.0
    andersen_prob: float = 0.01
    seed: int = 0
    device: str | None = None
    dtype: str = "float64"
    max_atoms: int | None = None
    max_systems: int | None = 64
    log_interval: int = 10
    trajectory_interval: int = 10


def _nve(model: Model, s: Settings) -> BaseDynamics:
    return NVE(
        model, dt=s.timestep, n_steps=s.md_steps, initial_temperature=s.temperature, velocity_seed=s.seed
    )


def _langevin(model: Model, s: Settings) -> BaseDynamics:
    return NVTLangevin(
        model,
        dt=s.timestep,
        temperature=s.temperature,
        friction=s.friction,
        seed=s.seed,
        n_steps=s.md_steps,
        initial_temperature=s.temperature,
        velocity_seed=s.seed,
    )


def _common(s: Settings) -> dict[str, Any]:
    return {"n_steps": s.md_steps, "initial_temperature": s.temperature, "velocity_seed": s.seed}


ENSEMBLES: dict[str, Callable[[Model, Settings], BaseDynamics]] = {
    "nve": _nve,
    "langevin": _langevin,
    "langevin-baoab": lambda m, s: LangevinBAOAB(
        m, s.timestep, s.temperature, T_tau=s.tau, seed=s.seed, **_common(s)
    ),
    "berendsen": lambda m, s: NVTBerendsen(m, s.timestep, s.temperature, s.tau, fixcm=False, **_common(s)),
    "bussi": lambda m, s: Bussi(m, s.timestep, s.temperature, s.tau, seed=s.seed, **_common(s)),
    "nose-hoover": lambda m, s: NoseHooverChainNVT(m, s.timestep, s.temperature, s.tau, **_common(s)),
    "andersen": lambda m, s: Andersen(
        m, s.timestep, s.temperature, s.andersen_prob, fixcm=False, seed=s.seed, **_common(s)
    ),
}
"""MD ensembles by command-line name."""


@dataclass
class Summary:
    """What a run did; written as ``summary.json`` and printed."""

    systems: int
    finished: int
    relaxed: int
    unconverged: list[int] = field(default_factory=list)
    set_aside: list[dict[str, Any]] = field(default_factory=list)
    """``{"index": ..., "reason": ...}`` for each structure that did not run."""
    unfinished: list[int] = field(default_factory=list)
    """Structures still running when the run was interrupted."""
    interrupted: bool = False
    atom_steps_per_second: float = 0.0
    seconds: float = 0.0
    fused_steps: int = 0
    outputs: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    """The run's :class:`Settings` (``nvalchemi-ase plot`` reads ``fmax`` and the stages)."""

    def text(self) -> str:
        from nvalchemi_ase.cli.text import plural

        lines = [
            f"{self.finished}/{plural(self.systems, 'system')} done in {self.seconds:.1f} s "
            f"({plural(self.fused_steps, 'fused step')}, {self.atom_steps_per_second:.3g} atom-steps/s)",
        ]
        if self.unconverged:
            lines.append(
                f"{plural(len(self.unconverged), 'system')} did not reach fmax within the relaxation "
                f"budget: {_listed(self.unconverged)}"
            )
        for entry in self.set_aside:
            lines.append(f"set aside: structure {entry['index']}: {entry['reason']}")
        if self.interrupted:
            lines.append(
                f"interrupted: {plural(len(self.unfinished), 'system')} unfinished: "
                f"{_listed(self.unfinished)}"
            )
        for what, where in self.outputs.items():
            lines.append(f"{what}: {where}")
        return "\n".join(lines)


def _listed(indices: list[int]) -> str:
    return ", ".join(map(str, indices[:20])) + (" ..." if len(indices) > 20 else "")


def _atoms_per_system(ctx: HookContext) -> torch.Tensor:
    """The log's ``atoms`` column (per-atom energies in ``nvalchemi-ase plot``)."""
    return ctx.batch.ptr[1:] - ctx.batch.ptr[:-1]


LOG_SCALARS = {"atoms": _atoms_per_system}
"""The log's columns besides the base ones."""


class _Snapshots:
    """AFTER_STEP every ``frequency`` steps: every system to the trajectory sink, with its step."""

    stage = DynamicsStage.AFTER_STEP

    def __init__(self, sink: TrajectorySink, frequency: int) -> None:
        self.sink = sink
        self.frequency = frequency

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        self.sink.write(ctx.batch, step=ctx.step_count + 1)


class _SteppedSink(TrajectorySink):
    """A trajectory sink whose frames without an explicit step get the pipeline's step count."""

    step_of: Callable[[], int] = staticmethod(lambda: 0)

    def write(self, batch: Any, mask: Any = None, *, step: int | None = None) -> None:
        super().write(batch, mask, step=self.step_of() if step is None else step)


class _SetAsideNonFinite:
    """AFTER_COMPUTE: systems with non-finite energy or forces leave the run, with their reason.

    One device→host copy per step (as ``NaNDetectorHook``). A bad system's
    forces are zeroed (so its update stays finite) and its status set to done;
    it is then written nowhere but ``summary.json``.
    """

    stage = DynamicsStage.AFTER_COMPUTE
    frequency = 1

    def __init__(self, exit_status: int, strict: bool) -> None:
        self.exit_status = exit_status
        self.strict = strict
        self.set_aside: dict[int, str] = {}
        """Reason by system id (a distributed worker sends it back with its chunk)."""

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        if batch.energy is None or batch.forces is None:
            return
        atom_bad = ~torch.isfinite(batch.forces).all(dim=1)
        bad = ~torch.isfinite(batch.energy.reshape(-1))
        bad = bad | (segment_sum(atom_bad.to(batch.forces.dtype), batch.batch_idx, batch.num_graphs) > 0)
        if not bool(bad.any()):  # the one sync per step
            return
        ids = batch.system_id[bad].tolist()
        for system_id in ids:
            self.set_aside.setdefault(int(system_id), f"non-finite energy or forces at step {ctx.step_count}")
        if self.strict:
            raise RuntimeError(f"non-finite energy or forces at step {ctx.step_count} in structures {ids}")
        batch.forces = torch.where(segment_broadcast(bad, batch.batch_idx).unsqueeze(1), 0.0, batch.forces)
        batch.status = torch.where(bad, self.exit_status, batch.status)


def build_pipeline(model: Model, settings: Settings, hooks: Sequence[Any]) -> FusedStage:
    stages: list[BaseDynamics] = []
    if settings.relax:
        stages.append(
            FIRE(
                model,
                convergence_hook=ConvergenceHook.from_fmax(settings.fmax),
                n_steps=settings.relax_steps,
                cell_filter=CellFilter(pressure_GPa=settings.pressure) if settings.relax_cell else None,
            )
        )
    if settings.md:
        stages.append(ENSEMBLES[settings.ensemble](model, settings))
    return FusedStage(stages, hooks=hooks)


def stage_names(settings: Settings) -> list[str]:
    """What the progress display calls the systems in each sub-stage."""
    return [name for name, on in (("relaxing", settings.relax), ("in MD", settings.md)) if on]


def run(
    structures: Sequence[Atoms],
    model: Model,
    settings: Settings,
    set_aside: Sequence[SetAside] = (),
    progress: Any = None,
    strict: bool = False,
    checkpointing: Checkpointing | None = None,
) -> Summary:
    """Run the job on every structure not set aside; writes the outputs as it goes.

    Files are flushed as they are written. On Ctrl-C the finished systems still
    go to ``final.extxyz`` and ``summary.json`` (``interrupted``, ``unfinished``)
    before ``KeyboardInterrupt`` propagates; a second Ctrl-C exits at once.
    Systems keep their input index as ``system_id`` (trajectory names, log rows,
    noise streams), set-aside structures or not. With ``checkpointing``
    (:mod:`nvalchemi_ase.cli.checkpointing`) the run saves checkpoints as it goes,
    stops with ``TerminatedAfterCheckpoint`` on SIGTERM, and continues a saved one.
    """
    out = settings.output
    trajectories = out / "trajectories"
    trajectories.mkdir(parents=True, exist_ok=True)
    sink = _SteppedSink(trajectories)
    exit_status = int(settings.relax) + int(settings.md)
    non_finite = _SetAsideNonFinite(exit_status, strict)
    skipped = {entry.index for entry in set_aside}
    running = [k for k in range(len(structures)) if k not in skipped]
    sampler = InflightSampler(
        [structures[k] for k in running],
        max_atoms=settings.max_atoms,
        max_systems=settings.max_systems,
        device=settings.device,
        dtype=getattr(torch, settings.dtype),
        ids=running,
    )
    finished: dict[int, Atoms] = {}
    counters = {"atom_steps": 0.0, "seconds": 0.0}
    hooks: list[Any] = []
    if checkpointing is not None:  # first: it saves the state each step starts from
        hooks.append(checkpointing.make_hook(sampler, finished, sink, out / "log.csv", counters))
    hooks += [
        non_finite,
        LoggingHook(
            frequency=settings.log_interval,
            backend="csv",
            log_path=str(out / "log.csv"),
            custom_scalars=LOG_SCALARS,
        ),
        _Snapshots(sink, settings.trajectory_interval),
    ]
    if progress is not None:
        hooks.append(progress.hook)
    pipeline = build_pipeline(model, settings, hooks)
    sink.step_of = lambda: pipeline.step_count
    restored = None
    if checkpointing is not None:
        restored, saved_counters = checkpointing.restore(pipeline, sampler, finished, sampler.device)
        counters.update(saved_counters)
        if progress is not None:
            progress.finished(len(finished))
    start = time.perf_counter() - counters["seconds"]

    def count_step(batch_atoms: int) -> None:
        counters["atom_steps"] += batch_atoms
        counters["seconds"] = time.perf_counter() - start

    interrupted = False
    previous_handler = None
    stop_on_sigterm = checkpointing.catch_sigterm() if checkpointing is not None else contextlib.nullcontext()
    try:
        with stop_on_sigterm:
            pipeline.run_inflight(
                sampler,
                sinks=[sink],
                on_finish=None if progress is None else progress.finished,
                on_step=count_step,
                results=finished,
                batch=restored,
            )
    except KeyboardInterrupt:
        interrupted = True
        if threading.current_thread() is threading.main_thread():
            previous_handler = signal.signal(signal.SIGINT, _exit_now)
    finally:
        sink.close()
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    aside = {entry.index: entry.reason for entry in set_aside}
    aside.update(non_finite.set_aside)
    done = [finished[k] for k in sorted(finished) if k not in aside]
    _write_final(out / "final.extxyz", done)
    summary = Summary(
        systems=len(structures),
        finished=len(done),
        relaxed=sum(1 for r in done if settings.relax and not r.info.get("unconverged")),
        unconverged=[r.info["system_id"] for r in done if r.info.get("unconverged")],
        set_aside=[{"index": k, "reason": aside[k]} for k in sorted(aside)],
        unfinished=sorted(set(running) - set(finished) - set(aside)) if interrupted else [],
        interrupted=interrupted,
        atom_steps_per_second=counters["atom_steps"] / seconds if seconds > 0 else 0.0,
        seconds=seconds,
        fused_steps=pipeline.step_count,
        outputs=outputs_of(out),
        settings={k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    if previous_handler is not None:  # written: Ctrl-C is an ordinary interrupt again
        signal.signal(signal.SIGINT, previous_handler)
    if interrupted:
        raise InterruptedRun(summary)
    return summary


def outputs_of(out: Path) -> dict[str, str]:
    """Where a run's outputs are (the summary lists them)."""
    return {
        "trajectories": str(out / "trajectories"),
        "final structures": str(out / "final.extxyz"),
        "log": str(out / "log.csv"),
        "summary": str(out / "summary.json"),
    }


class InterruptedRun(KeyboardInterrupt):
    """Ctrl-C during a run, after the finished systems were written; carries the summary."""

    def __init__(self, summary: Summary) -> None:
        super().__init__()
        self.summary = summary


def _exit_now(signum: int, frame: Any) -> None:
    import os

    os._exit(130)


def _write_final(path: Path, results: list[Atoms]) -> None:
    if not results:
        return
    for atoms in results:
        atoms.info = {k: v for k, v in atoms.info.items() if isinstance(v, int | float | str | bool)}
    ase.io.write(path, results, format="extxyz")
