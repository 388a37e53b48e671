"""What the variable-cell engines share: stress that is there when a step starts."""

from __future__ import annotations

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.hooks.stages import DynamicsStage


def recompute(engine: BaseDynamics, batch: Batch) -> None:
    """Evaluate the model now, with the engine's ``BEFORE_COMPUTE`` / ``AFTER_COMPUTE`` hooks around it."""
    engine._call_hooks(DynamicsStage.BEFORE_COMPUTE, batch)
    engine.compute(batch)
    engine._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)


def ensure_stress(engine: BaseDynamics, batch: Batch) -> None:
    """Compute the stress when the batch arrives without it (e.g. forces left by an optimizer).

    A host-side check of a field's presence: no device sync.
    """
    if batch.stress is None:
        recompute(engine, batch)
