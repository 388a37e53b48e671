"""What a worker needs to build its own model and pipeline: picklable recipes, not objects.

A model (weights, compiled kernels, a device) is built once per worker process
from a :class:`ModelSpec` and kept warm for every chunk that worker runs. The
pipeline is rebuilt per chunk from :attr:`ChunkPlan.build`, a picklable callable
(a module-level function, or a ``functools.partial`` of one) taking the model.
"""

from __future__ import annotations

import importlib
import pickle
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nvalchemi_ase.models.base import Model

__all__ = ["ChunkPlan", "ModelSpec", "warm_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A model as a recipe: ``factory(**kwargs)`` on the worker.

    Parameters
    ----------
    factory
        A picklable callable returning a batched model, or its import path
        (``"nvalchemi_ase.models:EMT"``).
    kwargs
        Keyword arguments of the factory (picklable).
    """

    factory: str | Callable[..., Model]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def build(self) -> Model:
        """A new model from the recipe."""
        factory = self.factory
        if isinstance(factory, str):
            module, _, name = factory.partition(":")
            if not module or not name:
                raise ValueError(f"model factory {factory!r} is not of the form 'package.module:name'")
            factory = getattr(importlib.import_module(module), name)
        return factory(**self.kwargs)

    def key(self) -> bytes:
        """Equal recipes give equal keys (the warm-model cache is keyed by it)."""
        return pickle.dumps((self.factory, sorted(self.kwargs.items())))


_WARM = threading.local()


def warm_model(spec: ModelSpec) -> Model:
    """The model of ``spec`` in this worker thread, built on first use and then reused.

    One per thread: a model keeps state between calls (its neighbour lists), so two
    chunks running at once in one worker process must not share it.
    """
    cache: dict[bytes, Model] = _WARM.__dict__.setdefault("models", {})
    key = spec.key()
    if key not in cache:
        cache[key] = spec.build()
    return cache[key]


@dataclass(frozen=True)
class ChunkPlan:
    """How a worker runs a chunk of structures.

    Parameters
    ----------
    build
        ``build(model)`` returns the engine or ``FusedStage`` to run (with its own
        hooks); picklable. A lone engine runs as a one-stage ``FusedStage``.
    max_systems, max_atoms
        Inflight budgets on the worker's device.
    device, dtype
        Where and in what precision (default: CUDA when the worker has it; float64).
    trajectory_interval
        Steps between the trajectory frames sent back (``None``: only each
        structure's final frame).
    log_interval
        Steps between the log rows sent back (``None``: no rows).
    log_scalars
        Extra log columns, ``LoggingHook``'s ``custom_scalars`` (picklable functions).
    n_steps
        Cap on fused steps per chunk (``None``: until every structure is done).
    threads
        ``torch.set_num_threads`` on the worker (``None``: leave it).
    """

    build: Callable[[Model], Any]
    max_systems: int | None = 64
    max_atoms: int | None = None
    device: str | None = None
    dtype: str = "float64"
    trajectory_interval: int | None = None
    log_interval: int | None = None
    log_scalars: dict[str, Callable[..., Any]] = field(default_factory=dict)
    n_steps: int | None = None
    threads: int | None = None
