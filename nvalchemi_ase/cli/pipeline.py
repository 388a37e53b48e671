"""The command line's job: relax then MD every structure of a file, with inflight batching.

Outputs in the output folder:

* ``trajectories/system_00000.traj`` ... one ASE trajectory per input structure;
* ``final.extxyz``: the final structures, in input order, with energy and forces;
* ``log.csv``: one row per system every ``log_interval`` steps (step, system,
  status, energy, fmax, temperature);
* ``summary.json`` and the printed summary.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import ase.io
import torch
from ase import Atoms

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
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.dynamics.hooks import LoggingHook, NaNDetectorHook, SnapshotHook
from nvalchemi_ase.models.base import Model


@dataclass
class Settings:
    """Everything a run needs besides the structures and the model."""

    output: Path
    relax: bool = True
    md: bool = True
    fmax: float = 0.05
    relax_steps: int = 500
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
    systems: int
    finished: int
    relaxed: int
    unconverged: list[int] = field(default_factory=list)
    atom_steps_per_second: float = 0.0
    seconds: float = 0.0
    fused_steps: int = 0
    outputs: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        lines = [
            f"{self.finished}/{self.systems} systems done in {self.seconds:.1f} s "
            f"({self.fused_steps} fused steps, {self.atom_steps_per_second:.3g} atom-steps/s)",
        ]
        if self.unconverged:
            shown = ", ".join(map(str, self.unconverged[:20])) + (
                " ..." if len(self.unconverged) > 20 else ""
            )
            lines.append(
                f"{len(self.unconverged)} did not reach fmax within the relaxation budget: systems {shown}"
            )
        for what, where in self.outputs.items():
            lines.append(f"{what}: {where}")
        return "\n".join(lines)


def build_pipeline(model: Model, settings: Settings, hooks: Sequence[Any]) -> FusedStage:
    stages: list[BaseDynamics] = []
    if settings.relax:
        stages.append(
            FIRE(
                model, convergence_hook=ConvergenceHook.from_fmax(settings.fmax), n_steps=settings.relax_steps
            )
        )
    if settings.md:
        stages.append(ENSEMBLES[settings.ensemble](model, settings))
    return FusedStage(stages, hooks=hooks)


def run(
    structures: Sequence[Atoms],
    model: Model,
    settings: Settings,
    on_finish: Callable[[int], None] | None = None,
) -> Summary:
    """Run the job; writes the outputs as it goes (flushed, readable if interrupted)."""
    out = settings.output
    trajectories = out / "trajectories"
    trajectories.mkdir(parents=True, exist_ok=True)
    sink = TrajectorySink(trajectories)
    hooks = [
        NaNDetectorHook(),
        LoggingHook(frequency=settings.log_interval, backend="csv", log_path=str(out / "log.csv")),
        SnapshotHook(sink=sink, frequency=settings.trajectory_interval),
    ]
    pipeline = build_pipeline(model, settings, hooks)
    sampler = InflightSampler(
        structures,
        max_atoms=settings.max_atoms,
        max_systems=settings.max_systems,
        device=settings.device,
        dtype=getattr(torch, settings.dtype),
    )
    start = time.perf_counter()
    atom_steps = 0

    def count_step(batch_atoms: int) -> None:
        nonlocal atom_steps
        atom_steps += batch_atoms

    results: list[Atoms] = []
    try:
        results = pipeline.run_inflight(sampler, sinks=[sink], on_finish=on_finish, on_step=count_step)
    finally:
        sink.close()
        seconds = time.perf_counter() - start
        _write_final(out / "final.extxyz", results)
    summary = Summary(
        systems=len(structures),
        finished=sum(1 for r in results if r.info.get("finished")),
        relaxed=sum(1 for r in results if settings.relax and not r.info.get("unconverged")),
        unconverged=[r.info["system_id"] for r in results if r.info.get("unconverged")],
        atom_steps_per_second=atom_steps / seconds if seconds > 0 else 0.0,
        seconds=seconds,
        fused_steps=pipeline.step_count,
        outputs={
            "trajectories": str(trajectories),
            "final structures": str(out / "final.extxyz"),
            "log": str(out / "log.csv"),
        },
    )
    (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary


def _write_final(path: Path, results: list[Atoms]) -> None:
    if not results:
        return
    for atoms in results:
        atoms.info = {k: v for k, v in atoms.info.items() if isinstance(v, int | float | str | bool)}
    ase.io.write(path, results, format="extxyz")
