"""A run's state as plain data: the batch's fields, and what engines and hooks hold.

:func:`batch_state` / :func:`batch_from_state` turn a ``Batch`` into host tensors
and back (every field with its declared scope, the host metadata). :func:`engine_state`
collects, from an engine, its sub-stages and its hooks, every attribute that is
data: tensors, random generators (their state), numbers, strings and containers of
them, and the same from plain objects they hold (a noise source, a sink's frame
counts). Models, batches, open files and callables are left out: the resumed run
builds those itself. :func:`load_engine_state` writes the values back into an
engine built the same way, so the next step is the one the saved run would have taken.

An object takes part in its own way by defining ``state_dict()`` and
``load_state_dict(state)``.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import io
import types
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.data.fields import FIELDS
from nvalchemi_ase.neighbors import NeighborList

__all__ = ["batch_from_state", "batch_state", "engine_state", "load_engine_state"]

_SKIPPED_NAMES = frozenset(
    {"model", "batch", "hooks", "_by_stage", "_hook_stack", "stages"}
    | {"_step_mask", "_status_tables"}  # scratch the engines remake on use
)
_SKIPPED_TYPES: tuple[type, ...] = (torch.nn.Module, Batch, io.IOBase, contextlib.ExitStack)
_CODE = (
    type,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.ModuleType,
    functools.partial,
)
_PLAIN = (
    type(None),
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    np.generic,
    np.ndarray,
    torch.device,
    torch.dtype,
)
_MAX_DEPTH = 4
DeviceMap = dict[str, torch.device | str]
"""Saved device name → device to restore to."""
_KIND = "__state_kind__"


class _Unsupported:
    """Marks a value that is not data (left out of the state)."""


_UNSUPPORTED = _Unsupported()


# ---------------------------------------------------------------------- batch
def batch_state(batch: Batch) -> dict[str, Any]:
    """The batch as host data: counts, every field (CPU copies) with its declaration, the metadata."""
    return {
        "counts": np.asarray(batch.counts).copy(),
        "device": str(batch.device),
        "fields": {name: getattr(batch, name).detach().cpu().clone() for name in batch.field_names()},
        "extra_fields": {n: s for n, s in batch._specs.items() if n not in FIELDS},
        "meta": batch.meta,
    }


def batch_from_state(state: dict[str, Any], device: torch.device | str | None = None) -> Batch:
    """The batch :func:`batch_state` described, on ``device`` (default CPU)."""
    fields = {name: value.to(device) for name, value in state["fields"].items()}
    extra = {n: s for n, s in state["extra_fields"].items() if n in fields}
    return Batch(state["counts"], fields, state["meta"], extra_fields=extra)


# ---------------------------------------------------------------------- engines
def engine_state(engine: Any) -> dict[str, Any]:
    """An engine's data (``FusedStage``: its own, each sub-stage's), its hooks' data and its models'
    neighbour lists (a list rebuilt at another step sums the same forces in another order)."""
    return {
        "type": type(engine).__name__,
        "engine": object_state(engine),
        "hooks": [_hook_state(hook) for hook in getattr(engine, "hooks", ())],
        "stages": [_without_models(engine_state(stage)) for stage in getattr(engine, "stages", ())],
        "neighbor_lists": [object_state(nl) for nl in model_neighbor_lists(engine)],
    }


def _without_models(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "neighbor_lists": []}  # the fused stage keeps its sub-stages' lists


def model_neighbor_lists(engine: Any) -> list[NeighborList]:
    """The neighbour lists the engine's models keep (each once, in a fixed order)."""
    models = [engine.model, *(stage.model for stage in getattr(engine, "stages", ()))]
    found: dict[int, NeighborList] = {}
    for model in models:
        owners = model.modules() if isinstance(model, torch.nn.Module) else [model]
        for owner in owners:
            for value in vars(owner).values():
                if isinstance(value, NeighborList):
                    found.setdefault(id(value), value)
    return list(found.values())


def load_engine_state(engine: Any, state: dict[str, Any], devices: DeviceMap | None = None) -> None:
    """Write :func:`engine_state` values back into ``engine`` (built as the saved one was).

    Tensors and generators go back to the device they were saved on, or to
    ``devices[that device]`` (a resumed run maps the saved batch's device to its own;
    host-side values stay on the host).

    Raises
    ------
    ValueError
        The engine, its sub-stages or its hooks do not match the saved ones
        (other classes, another count).
    """
    _check_shape(engine, state, "engine")
    lists = model_neighbor_lists(engine)
    if len(lists) != len(state["neighbor_lists"]):
        raise ValueError(
            f"the checkpoint's models keep {len(state['neighbor_lists'])} neighbour lists, "
            f"this run's {len(lists)}"
        )
    for neighbor_list, saved_list in zip(lists, state["neighbor_lists"], strict=True):
        load_object_state(neighbor_list, saved_list, devices)
    _load_engine(engine, state, devices)


def _load_engine(engine: Any, state: dict[str, Any], devices: DeviceMap | None) -> None:
    load_object_state(engine, state["engine"], devices)
    for hook, saved in zip(engine.hooks, state["hooks"], strict=True):
        if hasattr(hook, "load_state_dict"):
            hook.load_state_dict(saved["state"])
        else:
            load_object_state(hook, saved["state"], devices)
    for stage, saved in zip(getattr(engine, "stages", ()), state["stages"], strict=True):
        _load_engine(stage, saved, devices)


def _check_shape(engine: Any, state: dict[str, Any], where: str) -> None:
    if state["type"] != type(engine).__name__:
        raise ValueError(
            f"{where}: the checkpoint holds a {state['type']}, this run a {type(engine).__name__}"
        )
    hooks = [type(h).__name__ for h in getattr(engine, "hooks", ())]
    saved_hooks = [h["type"] for h in state["hooks"]]
    if hooks != saved_hooks:
        raise ValueError(
            f"{where} ({state['type']}): the checkpoint's hooks {saved_hooks}, this run's {hooks}"
        )
    stages = getattr(engine, "stages", ())
    if len(stages) != len(state["stages"]):
        raise ValueError(
            f"{where}: the checkpoint has {len(state['stages'])} sub-stages, this run {len(stages)}"
        )
    for k, (stage, saved) in enumerate(zip(stages, state["stages"], strict=True)):
        _check_shape(stage, saved, f"sub-stage {k}")


def _hook_state(hook: Any) -> dict[str, Any]:
    state = hook.state_dict() if hasattr(hook, "state_dict") else object_state(hook)
    return {"type": type(hook).__name__, "state": state}


# ---------------------------------------------------------------------- objects
def object_state(obj: Any, depth: int = 0) -> dict[str, Any]:
    """The data attributes of ``obj`` (see the module docstring), packed for saving."""
    state: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name in _SKIPPED_NAMES:
            continue
        packed = _pack(value, depth)
        if packed is not _UNSUPPORTED:
            state[name] = packed
    return state


def load_object_state(obj: Any, state: dict[str, Any], devices: DeviceMap | None = None) -> None:
    """Put packed attributes back into ``obj``'s ``__dict__`` (nested objects are filled in place)."""
    attributes = vars(obj)
    for name, packed in state.items():
        current = attributes.get(name)
        if isinstance(packed, dict) and packed.get(_KIND) == "object":
            if current is not None and type(current).__name__ == packed["type"]:
                if hasattr(current, "load_state_dict"):
                    current.load_state_dict(packed["state"])
                else:
                    load_object_state(current, packed["state"], devices)
            continue
        value = _unpack(packed, devices)
        if isinstance(value, torch.Tensor | torch.Generator) or not _equal(current, value):
            attributes[name] = value  # unchanged plain values keep their identity (shared sets stay shared)


def _pack(value: Any, depth: int, contained: bool = False) -> Any:
    """``value`` as data, or ``_UNSUPPORTED`` (objects are filled in place on loading: not in containers)."""
    if isinstance(value, torch.Tensor):
        return {_KIND: "tensor", "value": value.detach().cpu().clone(), "device": str(value.device)}
    if isinstance(value, torch.Generator):
        return {_KIND: "generator", "state": value.get_state(), "device": str(value.device)}
    if isinstance(value, (*_PLAIN, enum.Enum)):
        return value
    if isinstance(value, list | tuple | set | frozenset):
        items = [_pack(v, depth, contained=True) for v in value]
        if any(v is _UNSUPPORTED for v in items):
            return _UNSUPPORTED
        return {_KIND: "sequence", "type": type(value), "items": items}
    if isinstance(value, dict):
        packed = {k: _pack(v, depth, contained=True) for k, v in value.items()}
        if any(v is _UNSUPPORTED for v in packed.values()) or not all(isinstance(k, _PLAIN) for k in packed):
            return _UNSUPPORTED
        return {_KIND: "dict", "items": packed}
    if _is_plain_object(value) and depth < _MAX_DEPTH and not contained:
        state = value.state_dict() if hasattr(value, "state_dict") else object_state(value, depth + 1)
        return {_KIND: "object", "type": type(value).__name__, "state": state}
    return _UNSUPPORTED


def _is_plain_object(value: Any) -> bool:
    """An instance of an ordinary class (not a function, class, module, model, batch or file)."""
    return hasattr(value, "__dict__") and not isinstance(value, _SKIPPED_TYPES + _CODE)


def _unpack(packed: Any, devices: DeviceMap | None) -> Any:
    if not isinstance(packed, dict) or _KIND not in packed:
        return packed
    kind = packed[_KIND]
    if kind == "tensor":
        return packed["value"].to(_place(packed["device"], devices))
    if kind == "generator":
        generator = torch.Generator(device=_place(packed["device"], devices))
        generator.set_state(packed["state"])
        return generator
    if kind == "dict":
        return {k: _unpack(v, devices) for k, v in packed["items"].items()}
    items = [_unpack(v, devices) for v in packed["items"]]
    sequence_type = packed["type"]
    return sequence_type(*items) if hasattr(sequence_type, "_fields") else sequence_type(items)


def _place(saved: str, devices: DeviceMap | None) -> torch.device | str:
    return saved if devices is None else devices.get(saved, saved)


def _equal(current: Any, value: Any) -> bool:
    if type(current) is not type(value):
        return False
    try:
        return bool(current == value)
    except (RuntimeError, ValueError, TypeError):
        return False
