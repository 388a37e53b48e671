"""ASE's ``ase.optimize`` classes over batched engines: change one import, keep the script.

``from nvalchemi_ase.optimize import FIRE, BFGS, LBFGS, LBFGSLineSearch, MDMin`` take ASE's
arguments and give ASE's numbers; ``atoms`` may also be a list of ``Atoms``,
optimized together (per-system state and convergence; converged systems stop
moving).
"""

from __future__ import annotations

from nvalchemi_ase.optimize.bfgs import BFGS
from nvalchemi_ase.optimize.fire import FIRE
from nvalchemi_ase.optimize.lbfgs import LBFGS, LBFGSLineSearch
from nvalchemi_ase.optimize.mdmin import MDMin
from nvalchemi_ase.optimize.optimize import DEFAULT_MAX_STEPS, Optimizer, RestartError

__all__ = [
    "BFGS",
    "DEFAULT_MAX_STEPS",
    "FIRE",
    "LBFGS",
    "LBFGSLineSearch",
    "MDMin",
    "Optimizer",
    "RestartError",
]
