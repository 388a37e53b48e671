"""Engine optimizers: FIRE."""

from __future__ import annotations

from nvalchemi_ase.dynamics.optimizers.fire import FIRE

__all__ = ["FIRE"]
