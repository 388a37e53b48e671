"""The shared machinery of the ASE look-alikes (:mod:`nvalchemi_ase.md`, :mod:`nvalchemi_ase.optimize`).

:class:`LookalikeDynamics` (ASE's ``BaseDynamics``: observers, trajectories,
the per-step report), :class:`Systems` (Atoms ⇄ device batch), constraint
routing (FixAtoms, FixCartesian, FixCom on the device; any other ASE
constraint on the host) and ASE's output formats.
"""

from __future__ import annotations

from nvalchemi_ase._lookalike.base import LookalikeDynamics
from nvalchemi_ase._lookalike.constraints import ConstraintPlan, plan_constraints
from nvalchemi_ase._lookalike.host_constraints import HostConstraintHook
from nvalchemi_ase._lookalike.outputs import OptimizerLog, TrajectoryOutput, system_paths
from nvalchemi_ase._lookalike.random import ase_noise, check_rng
from nvalchemi_ase._lookalike.systems import Systems

__all__ = [
    "ConstraintPlan",
    "HostConstraintHook",
    "LookalikeDynamics",
    "OptimizerLog",
    "Systems",
    "TrajectoryOutput",
    "ase_noise",
    "check_rng",
    "plan_constraints",
    "system_paths",
]
