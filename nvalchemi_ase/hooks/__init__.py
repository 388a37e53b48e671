"""The hook core (protocol, context, registry, stages) and the general-purpose hooks."""

from __future__ import annotations

from nvalchemi_ase.hooks.bias import BiasedPotentialHook
from nvalchemi_ase.hooks.neighbor_list import NeighborListHook
from nvalchemi_ase.hooks.periodic import WrapPeriodicHook
from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.hooks.registry import HookRegistryMixin
from nvalchemi_ase.hooks.stages import DynamicsStage

__all__ = [
    "BiasedPotentialHook",
    "DynamicsStage",
    "Hook",
    "HookContext",
    "HookRegistryMixin",
    "NeighborListHook",
    "WrapPeriodicHook",
]
