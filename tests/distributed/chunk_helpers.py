"""Pipelines the test workers build: module-level, so Dask pickles them by name."""

from __future__ import annotations

import csv
import os
import signal
import time

import numpy as np
from ase import Atoms
from ase.build import bulk

from nvalchemi_ase.cli.scaling import worker_pipeline as _cli_worker_pipeline  # before any patch
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook
from nvalchemi_ase.hooks.stages import DynamicsStage


def structures(count: int) -> list[Atoms]:
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 1 + k % 2, 1))
        atoms.rattle(0.04 + 0.003 * k, seed=k)
        frames.append(atoms)
    return frames


def relax(model):
    return FIRE(model, n_steps=40, convergence_hook=ConvergenceHook.from_fmax(0.02))


class _DieOnce:
    """Kills its own process (SIGKILL: no clean-up) at step 3 of the first chunk to get there
    (on the Dask worker named ``worker``, and not before the time ``at``, when given)."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self, marker: str, worker: int | str | None = None, at: float | None = None) -> None:
        self.marker = marker
        self.worker = worker
        self.at = at

    def __call__(self, ctx, stage) -> None:
        if ctx.step_count != 3:
            return
        if self.worker is not None:
            from distributed import get_worker

            if get_worker().name != self.worker:
                return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # someone died already: this run goes through
        if self.at is not None:
            time.sleep(max(0.0, self.at - time.time()))
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)


def relax_but_die_once(model, marker: str, worker: int | str | None = None, at: float | None = None):
    engine = relax(model)
    engine.register_hook(_DieOnce(marker, worker, at))
    return engine


class _DieWith:
    """Kills its own process at step 3 of every chunk that holds structure ``system_id``."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self, system_id: int) -> None:
        self.system_id = system_id

    def __call__(self, ctx, stage) -> None:
        if ctx.step_count == 3 and bool((ctx.batch.system_id == self.system_id).any()):
            os.kill(os.getpid(), signal.SIGKILL)


def relax_but_die_with(model, system_id: int):
    engine = relax(model)
    engine.register_hook(_DieWith(system_id))
    return engine


def log_rows(text: str) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """(step, system, status) of each ``log.csv`` row, sorted, and the rows' other values in that order."""
    rows = sorted(list(csv.reader(text.splitlines()))[1:], key=lambda row: tuple(map(int, row[:3])))
    return [tuple(map(int, row[:3])) for row in rows], np.array([row[3:] for row in rows], dtype=float)


def cli_pipeline_but_die_with(model, settings, system_id: int):
    """The command line's worker pipeline, killing every worker that runs structure ``system_id``."""
    pipeline = _cli_worker_pipeline(model, settings)
    pipeline.register_hook(_DieWith(system_id))
    return pipeline
