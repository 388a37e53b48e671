"""Built-in dynamics hooks: observers, safety checks and constraints.

Observers (``AFTER_STEP``): :class:`LoggingHook`, :class:`SnapshotHook`,
:class:`EnergyDriftMonitorHook`; :class:`ConvergedSnapshotHook` (``ON_CONVERGE``);
:class:`ProfilerHook` (every stage of a step). Safety (``AFTER_COMPUTE``):
:class:`MaxForceClampHook`, :class:`NaNDetectorHook`. Constraint
(``BEFORE_PRE_UPDATE`` and ``AFTER_POST_UPDATE``): :class:`FreezeAtomsHook`.
"""

from __future__ import annotations

from nvalchemi_ase.dynamics.hooks.drift import EnergyDriftError, EnergyDriftMonitorHook, EnergyDriftWarning
from nvalchemi_ase.dynamics.hooks.freeze import FreezeAtomsHook
from nvalchemi_ase.dynamics.hooks.logging import LoggingHook
from nvalchemi_ase.dynamics.hooks.profiler import ProfilerHook
from nvalchemi_ase.dynamics.hooks.safety import MaxForceClampHook, NaNDetectorHook, NonFiniteError
from nvalchemi_ase.dynamics.hooks.snapshot import ConvergedSnapshotHook, SnapshotHook

__all__ = [
    "ConvergedSnapshotHook",
    "EnergyDriftError",
    "EnergyDriftMonitorHook",
    "EnergyDriftWarning",
    "FreezeAtomsHook",
    "LoggingHook",
    "MaxForceClampHook",
    "NaNDetectorHook",
    "NonFiniteError",
    "ProfilerHook",
    "SnapshotHook",
]
