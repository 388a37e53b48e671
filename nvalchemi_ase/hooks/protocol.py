"""The hook protocol and the context a hook is called with.

A hook is any object with ``stage`` (one stage, or ``None`` when it declares
several through ``stages``), ``frequency`` (fires when
``step_count % frequency == 0``) and ``__call__(ctx, stage)``. Hooks may also
define ``on_register(engine)``, and ``__enter__``/``__exit__`` or ``close()``,
which ``run()`` calls around the loop.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from nvalchemi_ase.data import Batch


@runtime_checkable
class Hook(Protocol):
    """What the engine needs from a hook."""

    stage: enum.Enum | None
    frequency: int

    def __call__(self, ctx: HookContext, stage: enum.Enum) -> None: ...


@dataclass
class HookContext:
    """What a hook sees when it fires.

    Attributes
    ----------
    batch
        The live batch (hooks may modify it in place where their stage allows).
    dynamics
        The engine running the loop.
    step_count
        Steps completed before this one (0 during the first step).
    stage
        The stage being dispatched.
    model
        The engine's model.
    converged_mask
        At ``ON_CONVERGE``: ``[B]`` bool, the systems that converged at this
        step. ``None`` at other stages.
    """

    batch: Batch
    dynamics: Any
    step_count: int
    stage: enum.Enum
    model: Any = None
    converged_mask: torch.Tensor | None = None

    @property
    def workflow(self) -> Any:
        """The engine (also reachable as ``dynamics``)."""
        return self.dynamics


def hook_stages(hook: Any) -> tuple[enum.Enum, ...]:
    """The stages a hook fires at: its ``stages`` if it has them, else its ``stage``."""
    stages: Iterable[enum.Enum] | None = getattr(hook, "stages", None)
    if stages is not None:
        return tuple(stages)
    return () if hook.stage is None else (hook.stage,)
