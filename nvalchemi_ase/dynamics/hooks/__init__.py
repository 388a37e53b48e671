"""Built-in dynamics hooks (re-exported from :mod:`nvalchemi_ase.hooks`, where they live).

Observers (``AFTER_STEP``): :class:`LoggingHook`, :class:`SnapshotHook`,
:class:`EnergyDriftMonitorHook`; :class:`ConvergedSnapshotHook` (``ON_CONVERGE``);
:class:`ProfilerHook` (every stage of a step). Safety (``AFTER_COMPUTE``):
:class:`MaxForceClampHook`, :class:`NaNDetectorHook`. Constraint
(``BEFORE_PRE_UPDATE`` and ``AFTER_POST_UPDATE``): :class:`FreezeAtomsHook`;
:class:`ConstraintHook` (``FixCartesian`` components and ``FixCom``, a :class:`Constraints`).
"""

from __future__ import annotations

from nvalchemi_ase.hooks.constraints import ConstraintHook, Constraints
from nvalchemi_ase.hooks.drift import EnergyDriftError, EnergyDriftMonitorHook, EnergyDriftWarning
from nvalchemi_ase.hooks.freeze import FreezeAtomsHook
from nvalchemi_ase.hooks.logging import LoggingHook
from nvalchemi_ase.hooks.profiler import ProfilerHook
from nvalchemi_ase.hooks.safety import MaxForceClampHook, NaNDetectorHook, NonFiniteError
from nvalchemi_ase.hooks.snapshot import ConvergedSnapshotHook, SnapshotHook

__all__ = [
    "ConstraintHook",
    "Constraints",
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
