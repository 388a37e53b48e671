"""The hook core (protocol, context, registry) and the general-purpose hooks."""

from __future__ import annotations

from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.hooks.registry import HookRegistryMixin

__all__ = ["Hook", "HookContext", "HookRegistryMixin"]
