"""A hook that records when it fires: the stage-order and frequency tests use it."""

from __future__ import annotations

from nvalchemi_ase.dynamics import DynamicsStage


class RecordingHook:
    """Fires at every stage (or the given ones) and appends ``(step_count, stage)`` to ``calls``."""

    stage = None

    def __init__(self, stages=tuple(DynamicsStage), frequency: int = 1, name: str = "") -> None:
        self.stages = tuple(stages)
        self.frequency = frequency
        self.name = name
        self.calls: list[tuple[int, DynamicsStage]] = []
        self.converged: list[list[int]] = []

    def __call__(self, ctx, stage) -> None:
        self.calls.append((ctx.step_count, stage))
        if stage is DynamicsStage.ON_CONVERGE:
            self.converged.append(ctx.batch.system_id[ctx.converged_mask].tolist())
