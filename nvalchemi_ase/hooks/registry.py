"""``HookRegistryMixin``: registration, validation and stage dispatch.

Hooks are kept in one list per stage, in registration order, so dispatching a
stage nobody listens to costs a dict lookup, and a context object is built only
when some hook actually fires.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Iterable
from typing import Any

from nvalchemi_ase.hooks.protocol import Hook, HookContext, hook_stages


class HookRegistryMixin:
    """Adds ``register_hook`` and stage dispatch to an engine.

    Engines set ``_stage_type`` (the enum their stages belong to) and provide
    ``step_count``, ``model`` and the batch being advanced.
    """

    _stage_type: type[enum.Enum]
    step_count: int

    def _init_hooks(self, hooks: Iterable[Any] | None) -> None:
        self.hooks: list[Any] = []
        self._by_stage: dict[enum.Enum, list[Any]] = {}
        for hook in hooks or ():
            self.register_hook(hook)

    def register_hook(self, hook: Any, stage: enum.Enum | None = None) -> None:
        """Validate and add a hook; hooks of one stage fire in registration order.

        Raises
        ------
        ValueError
            ``frequency`` is not an integer ≥ 1.
        TypeError
            The object is not a hook, has no stage, or a stage of another kind.
        """
        if not callable(hook) or not hasattr(hook, "frequency"):
            raise TypeError(f"{hook!r} is not a hook: it needs stage, frequency and __call__(ctx, stage)")
        frequency = hook.frequency
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"{type(hook).__name__}.frequency must be an integer >= 1, got {frequency!r}")
        if stage is not None:
            hook.stage = stage
        stages = hook_stages(hook)
        if not stages:
            raise TypeError(f"{type(hook).__name__} has no stage: pass stage= or set hook.stage")
        for one in stages:
            if not isinstance(one, self._stage_type):
                raise TypeError(
                    f"{type(hook).__name__} has stage {one!r}; {type(self).__name__} only accepts "
                    f"{self._stage_type.__name__} stages"
                )
        on_register = getattr(hook, "on_register", None)
        if on_register is not None:
            on_register(self)
        self.hooks.append(hook)
        for one in stages:
            self._by_stage.setdefault(one, []).append(hook)

    def hooks_at(self, stage: enum.Enum) -> list[Any]:
        """The hooks registered at ``stage``, in firing order."""
        return list(self._by_stage.get(stage, ()))

    def _due(self, stage: enum.Enum) -> list[Any]:
        return [h for h in self._by_stage.get(stage, ()) if self.step_count % h.frequency == 0]

    def _call_hooks(self, stage: enum.Enum, batch: Any, **extra: Any) -> None:
        if stage not in self._by_stage:  # nobody listens: the common case, several times a step
            return
        due = self._due(stage)
        if not due:
            return
        ctx = HookContext(
            batch=batch,
            dynamics=self,
            step_count=self.step_count,
            stage=stage,
            model=getattr(self, "model", None),
            **extra,
        )
        for hook in due:
            hook(ctx, stage)

    def _open_hooks(self, stack: contextlib.ExitStack) -> None:
        """Enter every distinct hook that is a context manager, or arrange ``close()`` for it."""
        seen: set[int] = set()
        for hook in self.hooks:
            if id(hook) in seen:
                continue
            seen.add(id(hook))
            if hasattr(hook, "__enter__") and hasattr(hook, "__exit__"):
                stack.enter_context(hook)
            elif callable(getattr(hook, "close", None)):
                stack.callback(hook.close)


__all__ = ["Hook", "HookContext", "HookRegistryMixin"]
