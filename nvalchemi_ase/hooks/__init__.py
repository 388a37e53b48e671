"""Every hook: the core (protocol, context, registry, stages), the general hooks, and the
observer, safety and constraint hooks (also importable from :mod:`nvalchemi_ase.dynamics.hooks`)."""

from __future__ import annotations

from nvalchemi_ase.hooks.bias import BiasedPotentialHook
from nvalchemi_ase.hooks.constraints import ConstraintHook, Constraints
from nvalchemi_ase.hooks.drift import EnergyDriftError, EnergyDriftMonitorHook, EnergyDriftWarning
from nvalchemi_ase.hooks.freeze import FreezeAtomsHook
from nvalchemi_ase.hooks.logging import LoggingHook
from nvalchemi_ase.hooks.neighbor_list import NeighborListHook
from nvalchemi_ase.hooks.periodic import WrapPeriodicHook
from nvalchemi_ase.hooks.profiler import ProfilerHook
from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.hooks.registry import HookRegistryMixin
from nvalchemi_ase.hooks.safety import MaxForceClampHook, NaNDetectorHook, NonFiniteError
from nvalchemi_ase.hooks.snapshot import ConvergedSnapshotHook, SnapshotHook
from nvalchemi_ase.hooks.stages import DynamicsStage

__all__ = [
    "BiasedPotentialHook",
    "ConstraintHook",
    "Constraints",
    "ConvergedSnapshotHook",
    "DynamicsStage",
    "EnergyDriftError",
    "EnergyDriftMonitorHook",
    "EnergyDriftWarning",
    "FreezeAtomsHook",
    "Hook",
    "HookContext",
    "HookRegistryMixin",
    "LoggingHook",
    "MaxForceClampHook",
    "NaNDetectorHook",
    "NeighborListHook",
    "NonFiniteError",
    "ProfilerHook",
    "SnapshotHook",
    "WrapPeriodicHook",
]
