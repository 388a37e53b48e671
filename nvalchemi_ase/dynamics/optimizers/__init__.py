"""Engine optimizers: FIRE, BFGS, LBFGS and MDMin, with ASE's algorithms and defaults, per system."""

from __future__ import annotations

from nvalchemi_ase.dynamics.optimizers.bfgs import BFGS
from nvalchemi_ase.dynamics.optimizers.fire import FIRE
from nvalchemi_ase.dynamics.optimizers.lbfgs import LBFGS
from nvalchemi_ase.dynamics.optimizers.mdmin import MDMin

__all__ = ["BFGS", "FIRE", "LBFGS", "MDMin"]
