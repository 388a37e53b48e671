"""What the variable-cell engines share: stress that is there when a step starts."""

from __future__ import annotations

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.models.base import Model


def require_stress(model: Model) -> None:
    """Refuse, before anything is set up, a model that cannot give the stress a variable cell needs."""
    if "stress" not in model.implemented_properties:
        raise TypeError(
            f"model {type(model).__name__} does not implement stress (needed for a variable cell)"
        )


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
