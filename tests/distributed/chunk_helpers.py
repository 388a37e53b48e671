"""Pipelines the test workers build: module-level, so Dask pickles them by name."""

from __future__ import annotations

import os
import signal

from ase import Atoms
from ase.build import bulk

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
    """Kills its own process (SIGKILL: no clean-up) at step 3 of the first chunk to get there."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __call__(self, ctx, stage) -> None:
        if ctx.step_count != 3:
            return
        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return  # someone died already: this run goes through
        os.write(descriptor, str(os.getpid()).encode())
        os.close(descriptor)
        os.kill(os.getpid(), signal.SIGKILL)


def relax_but_die_once(model, marker: str):
    engine = relax(model)
    engine.register_hook(_DieOnce(marker))
    return engine
