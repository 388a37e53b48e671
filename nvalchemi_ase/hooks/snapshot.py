"""Write the batch to a data sink: every ``frequency`` steps, or each system once, as it converges.

A sink is anything with ``write(batch, mask=None)`` (see
:mod:`nvalchemi_ase.sinks`); the sink makes whatever copy it keeps,
the hooks hand it the live batch.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage


@runtime_checkable
class WritableSink(Protocol):
    """What these hooks need from a sink."""

    def write(self, batch: Batch, mask: torch.Tensor | None = None) -> Any: ...


def _check(sink: Any, frequency: int) -> None:
    if not callable(getattr(sink, "write", None)):
        raise TypeError(f"sink must have a write(batch, mask=None) method, got {sink!r}")
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")


class SnapshotHook:
    """Write the whole batch to ``sink`` at ``AFTER_STEP`` every ``frequency`` steps.

    Parameters
    ----------
    sink
        Receives ``sink.write(batch)`` (positions Å, velocities Å per ASE time
        unit, energy eV, forces eV/Å: the batch as it is).
    frequency
        Fire when ``step_count % frequency == 0`` (so at step 0): ``n_steps``
        steps give ``ceil(n_steps / frequency)`` snapshots.
    """

    stage = DynamicsStage.AFTER_STEP

    def __init__(self, sink: WritableSink, frequency: int = 1) -> None:
        _check(sink, frequency)
        self.sink = sink
        self.frequency = frequency

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        self.sink.write(ctx.batch)

    def __repr__(self) -> str:
        return f"SnapshotHook(sink={self.sink!r}, frequency={self.frequency})"


class ConvergedSnapshotHook:
    """Write each system to ``sink`` once, at ``ON_CONVERGE`` of the step it converged.

    Parameters
    ----------
    sink
        Receives ``sink.write(batch, mask=converged_mask)``, ``mask`` a
        ``[B]`` bool tensor of the systems that converged at this step.
    frequency
        Fire when ``step_count % frequency == 0``; keep 1 to catch every
        system (ON_CONVERGE fires only at the step a system converges).

    Notes
    -----
    One device→host sync per firing (is any system in the mask?); nothing is
    written when the mask is ``None`` or all False.
    """

    stage = DynamicsStage.ON_CONVERGE

    def __init__(self, sink: WritableSink, frequency: int = 1) -> None:
        _check(sink, frequency)
        self.sink = sink
        self.frequency = frequency

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        mask = ctx.converged_mask
        if mask is None:
            return
        if mask.shape != (ctx.batch.num_graphs,):
            raise ValueError(
                f"converged_mask has shape {tuple(mask.shape)}, expected ({ctx.batch.num_graphs},)"
            )
        if not bool(mask.any()):  # the firing's only sync
            return
        self.sink.write(ctx.batch, mask=mask)

    def __repr__(self) -> str:
        return f"ConvergedSnapshotHook(sink={self.sink!r}, frequency={self.frequency})"


__all__ = ["ConvergedSnapshotHook", "SnapshotHook", "WritableSink"]
