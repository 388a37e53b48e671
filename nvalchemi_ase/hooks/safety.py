"""Safety hooks at ``AFTER_COMPUTE``: stop on non-finite model output, clamp huge forces.

Register the clamp before the NaN check (both fire at ``AFTER_COMPUTE``, in
registration order), and both after a ``BiasedPotentialHook``.
"""

from __future__ import annotations

import collections
import ctypes
import logging
import math
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch

from nvalchemi_ase.data import FORCES_BOUND, Batch, Scope, forces_bound
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.segment import segment_sum

CLAMP_LOGGER = logging.getLogger("nvalchemi_ase.clamp")
"""Where :class:`MaxForceClampHook` reports clamps (level WARNING)."""


class NonFiniteError(RuntimeError):
    """A model output (or another checked field) holds NaN or ±Inf."""


def _check_frequency(frequency: int) -> int:
    if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
        raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
    return frequency


class NaNDetectorHook:
    """Raise :class:`NonFiniteError` when forces, energy or extra fields hold NaN or ±Inf.

    Parameters
    ----------
    extra_keys
        More batch fields to check (e.g. ``"stress"``); fields the batch does
        not hold are skipped. With ``"stress"``, the engine is asked to have
        the model return stress.
    frequency
        Check when ``step_count % frequency == 0``.

    Notes
    -----
    On a CPU, per firing, a maximum and a minimum per field (numpy's, on the
    tensors' memory; NaN and ±Inf carry into both), read at once: the run
    stops at the step that went bad. Where the model gave the forces' bound
    (:data:`~nvalchemi_ase.data.fields.FORCES_BOUND`: the built-in pair
    potentials on a CPU), forces and energy are tested by summing its ``B``
    numbers instead. On CUDA, one sum per field (NaN and ±Inf
    carry into a sum) and one flag, copied to the host without waiting and read at a
    later firing (or when the hooks close at the end of the run): no sync per
    step, and the error still names the step it happened at. The message
    names the step, the bad fields and, per field, the number of non-finite
    elements and the systems (batch indices) holding them.
    """

    stage = DynamicsStage.AFTER_COMPUTE

    def __init__(self, extra_keys: Iterable[str] | None = None, frequency: int = 1) -> None:
        if isinstance(extra_keys, str):
            raise TypeError(f"extra_keys must be a list of field names, got the string {extra_keys!r}")
        extra = list(extra_keys or ())
        if not all(isinstance(key, str) for key in extra):
            raise TypeError(f"extra_keys must be field names (str), got {extra!r}")
        self.extra_keys = tuple(extra)
        self.keys = tuple(dict.fromkeys(("forces", "energy", *extra)))
        self._unbounded = tuple(key for key in self.keys if key not in _BOUNDED)
        self.frequency = _check_frequency(frequency)
        self._pending: collections.deque[_Pending] = collections.deque()

    def on_register(self, engine: Any) -> None:
        """Ask the engine for the model's forces bound, and for stress when it is to be checked."""
        if hasattr(engine, "request_property"):
            engine.request_property(FORCES_BOUND)
            if "stress" in self.extra_keys:
                engine.request_property("stress")

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        bound = _model_bound(batch)
        if bound is not None and not math.isfinite(sum(bound)):  # its values are >= 0 when finite
            self._raise_if_bad(_Pending(None, None, ctx.step_count, batch, self._fields(batch, self.keys)))
        fields = self._fields(batch, self.keys if bound is None else self._unbounded)
        if not fields:
            return
        arrays = _cpu_arrays([value for _, value in fields])
        if arrays is not None:  # read at once
            if not all(_finite(array) for array in arrays):
                self._raise_if_bad(_Pending(None, None, ctx.step_count, batch, fields))
            return
        total = fields[0][1].sum()
        for _, value in fields[1:]:
            total = total + value.sum()
        finite = torch.isfinite(total)  # False when any element is NaN or ±Inf (or a finite sum overflowed)
        event = None
        if finite.is_cuda:  # to the host without waiting; read once it has landed
            finite = torch.empty((), dtype=torch.bool, pin_memory=True).copy_(finite, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
        self._pending.append(_Pending(finite, event, ctx.step_count, batch, fields))
        self._check(wait=False)

    @staticmethod
    def _fields(batch: Batch, keys: tuple[str, ...]) -> list[tuple[str, torch.Tensor]]:
        return [(key, value) for key in keys if (value := getattr(batch, key, None)) is not None]

    def close(self) -> None:
        """Read the flags still on their way (the end of a run): raise for a step that went bad."""
        self._check(wait=True)

    def _check(self, wait: bool) -> None:
        """Read the flags that have landed: all with ``wait``, always the oldest past ``_MOST_PENDING``."""
        while self._pending:
            first = self._pending[0]
            landed = first.event is None or first.event.query()
            if not (landed or wait or len(self._pending) > _MOST_PENDING):
                return
            if first.event is not None:
                first.event.synchronize()
            self._pending.popleft()
            if not bool(first.finite):
                self._raise_if_bad(first)

    def _raise_if_bad(self, pending: _Pending) -> None:
        """Raise :class:`NonFiniteError` for ``pending``'s step unless all is finite (a sum overflowed)."""
        finite = torch.stack([torch.isfinite(value).all() for _, value in pending.fields]).tolist()
        if all(finite):
            return  # a finite sum overflowed: nothing is wrong
        self._pending.clear()
        bad = [(key, value) for (key, value), ok in zip(pending.fields, finite, strict=True) if not ok]
        lines = [f"non-finite values at step {pending.step} in field(s) {[key for key, _ in bad]}"]
        lines += [_describe(pending.batch, key, value) for key, value in bad]
        raise NonFiniteError("\n".join(lines))

    def __repr__(self) -> str:
        return f"NaNDetectorHook(extra_keys={list(self.extra_keys)}, frequency={self.frequency})"


_MOST_PENDING = 4
"""Unread flags a CUDA run may have on their way before a firing waits for the oldest."""


class _Pending(NamedTuple):
    """One firing's flag (on the host once ``event`` completed), with what the message needs."""

    finite: torch.Tensor | None
    """None for a CPU firing, whose flag was read at once."""
    event: Any
    step: int
    batch: Batch
    fields: list[tuple[str, torch.Tensor]]
    """The checked tensors of that step (fields are replaced, never written into: they keep their values)."""


def _describe(batch: Batch, key: str, value: torch.Tensor) -> str:
    """``"  key: n non-finite element(s) in system(s) [...]"`` (per-atom rows mapped through batch_idx)."""
    bad = ~torch.isfinite(value)
    rows = bad.reshape(bad.shape[0], -1).any(dim=1)
    per_atom = batch.scope_of(key) is Scope.ATOM
    systems = torch.unique(batch.batch_idx[rows]) if per_atom else torch.nonzero(rows).reshape(-1)
    ids = batch.system_id[systems]
    return (
        f"  {key}: {int(bad.sum())} non-finite element(s) in system(s) {systems.tolist()} "
        f"(system_id {ids.tolist()})"
    )


class MaxForceClampHook:
    """Scale every atomic force longer than ``max_force`` down to ``max_force``, keeping its direction.

    Parameters
    ----------
    max_force
        Largest force norm allowed, eV/Å (> 0). Forces exactly at the limit,
        and zero forces, are left bit-for-bit unchanged.
    log_clamps
        Log (logger ``"nvalchemi_ase.clamp"``, WARNING) the step and the number
        of clamped atoms per affected system on firings that clamp anything.
        Costs one device→host sync per firing; none when False.
    frequency
        Clamp when ``step_count % frequency == 0``.

    Notes
    -----
    On a CPU a firing first bounds the norms by the largest force component
    (:func:`might_clamp`, one value read on the host, or the model's
    :data:`~nvalchemi_ase.data.fields.FORCES_BOUND` where it gave one); when no
    row can be over the limit, the forces tensor is kept as it is and the
    firing costs about a tenth of a clamp. On a GPU every firing runs the branch-free clamp (no read
    on the host, no sync).

    Attributes
    ----------
    clamped
        ``[B]`` long on the device: clamped atoms per system, summed over the
        firings since the hook last saw a batch of another size (None before
        the first firing). Counted per atom at each firing and summed per
        system when read.
    """

    stage = DynamicsStage.AFTER_COMPUTE

    def __init__(self, max_force: float, log_clamps: bool = False, frequency: int = 1) -> None:
        if isinstance(max_force, bool) or not isinstance(max_force, int | float):
            raise ValueError(f"max_force must be a positive number (eV/Å), got {max_force!r}")
        if not (max_force > 0.0 and math.isfinite(max_force)):
            raise ValueError(f"max_force must be positive and finite (eV/Å), got {max_force!r}")
        if not isinstance(log_clamps, bool):
            raise TypeError(f"log_clamps must be a bool, got {log_clamps!r}")
        self.max_force = float(max_force)
        self._safe_component = self.max_force / _OVER_ROOT_3
        self.log_clamps = log_clamps
        self.frequency = _check_frequency(frequency)
        self._atom_counts: torch.Tensor | None = None
        self._systems: tuple[torch.Tensor, int] | None = None
        """``(batch_idx, num_graphs)`` of the batch the atom counts belong to."""

    @property
    def clamped(self) -> torch.Tensor | None:
        if self._atom_counts is None or self._systems is None:
            return None
        batch_idx, num_graphs = self._systems
        return segment_sum(self._atom_counts, batch_idx, num_graphs)

    def on_register(self, engine: Any) -> None:
        """Ask the engine for the model's forces bound."""
        if hasattr(engine, "request_property"):
            engine.request_property(FORCES_BOUND)

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        if batch.forces is None:
            return
        counts = self._atom_counts
        if (
            counts is None
            or self._systems is None
            or counts.shape[0] != batch.num_nodes
            or counts.device != batch.forces.device
            or self._systems[1] != batch.num_graphs
        ):
            counts = self._atom_counts = torch.zeros(
                batch.num_nodes, dtype=torch.long, device=batch.forces.device
            )
        self._systems = (batch.batch_idx, batch.num_graphs)
        bound = _model_bound(batch)
        if bound is None:
            if not might_clamp(batch.forces, self.max_force):
                return
        elif all(map(self._safe_component.__ge__, bound)):  # NaN compares False: such systems clamp
            return
        forces, over = clamp_forces(batch.forces, self.max_force)
        batch.forces = forces
        counts += over
        if self.log_clamps:
            self._log(ctx.step_count, segment_sum(over.long(), batch.batch_idx, batch.num_graphs))

    @staticmethod
    def _log(step: int, counts: torch.Tensor) -> None:
        per_system = counts.tolist()  # the firing's only sync
        affected = {system: n for system, n in enumerate(per_system) if n}
        if affected:
            CLAMP_LOGGER.warning(
                "step %d: clamped %d atom(s): %s",
                step,
                sum(affected.values()),
                ", ".join(f"system {system}: {n}" for system, n in affected.items()),
            )

    def __repr__(self) -> str:
        return (
            f"MaxForceClampHook(max_force={self.max_force}, log_clamps={self.log_clamps}, "
            f"frequency={self.frequency})"
        )


_OVER_ROOT_3 = 1.7321
"""A little over √3: a row whose components are all at most ``max_force`` over this has
``|F| < max_force (1 - 2e-5)``, so no rounding of its norm can put it over the limit."""


def might_clamp(forces: torch.Tensor, max_force: float) -> bool:
    """False when no row of ``forces`` can be longer than ``max_force``; always True off the CPU.

    On a CPU, one bound read on the host (``max |component| · √3 <= max_force``,
    a maximum and a minimum of numpy's, a tenth of the clamp's cost) lets a run whose forces are all
    well under the limit, the usual case for a safety clamp, skip the clamp and
    keep its forces tensor. On a GPU that read would wait for the device every
    step, so the branch-free clamp always runs there.
    """
    arrays = _cpu_arrays([forces])
    if arrays is None:
        return True
    (values,) = arrays
    if values.size == 0:
        return False
    # NaN propagates through max and min and fails the comparison: such rows take the clamp, which keeps them
    return not (max(values.max(), -values.min()) <= max_force / _OVER_ROOT_3)


_BOUNDED = ("forces", "energy")
"""The fields a model's forces bound vouches for."""


def _model_bound(batch: Batch) -> memoryview[float] | None:
    """The model's :data:`~nvalchemi_ase.data.fields.FORCES_BOUND` for the batch's forces and energy
    as host floats, or None (none given, or a hook replaced or edited the forces or energy since).

    A memoryview of the tensor's memory (kept alive by the batch), read without numpy or torch:
    after a step's kernels have filled the caches, the first numpy or torch call of a step costs
    ~15 µs on our CPU while its code is loaded again; this costs a few microseconds."""
    bound = forces_bound(batch)
    if bound is None:
        return None
    floats = (ctypes.c_double * bound.shape[0]).from_address(bound.data_ptr())
    return memoryview(floats).cast("B").cast("d")  # reads ten times as fast as the ctypes array


def _cpu_arrays(tensors: list[torch.Tensor]) -> list[np.ndarray] | None:
    """numpy views (no copy) of CPU float tensors, for reductions read on the host at once; None off the CPU.

    A torch reduction on a few thousand elements costs a few microseconds of
    dispatch besides its arithmetic, about twice numpy's on the same memory; with
    a sum or a bound per firing and a firing per step, that is a safety hook's
    cost. Other dtypes (half precision, integers) also give None.
    """
    if not all(tensor.is_cpu and tensor.dtype in _NUMPY_FLOATS for tensor in tensors):
        return None
    return [(tensor.detach() if tensor.requires_grad else tensor).numpy() for tensor in tensors]


_NUMPY_FLOATS = (torch.float32, torch.float64)


def _finite(array: np.ndarray) -> bool:
    """Whether every element is finite (NaN and ±Inf carry into its maximum or minimum; no sum overflows)."""
    return array.size == 0 or (math.isfinite(array.max()) and math.isfinite(array.min()))


def clamp_forces(forces: torch.Tensor, max_force: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Forces with every row longer than ``max_force`` rescaled to ``max_force`` (branch-free).

    Parameters
    ----------
    forces
        ``[N, 3]`` eV/Å.
    max_force
        eV/Å.

    Returns
    -------
    tuple
        The clamped ``[N, 3]`` forces and the ``[N]`` bool mask of clamped atoms.
    """
    norms = torch.linalg.vector_norm(forces, dim=1, keepdim=True)
    # max_force / |F| capped at 1: rows at or under the limit (zero rows: inf) are multiplied by exactly 1,
    # rows with a NaN norm too (nan_to_num), so only rows over the limit change.
    scale = (max_force / norms).clamp_(max=1.0).nan_to_num_(nan=1.0)
    return forces * scale, (norms > max_force).reshape(-1)


__all__ = [
    "CLAMP_LOGGER",
    "MaxForceClampHook",
    "NaNDetectorHook",
    "NonFiniteError",
    "clamp_forces",
    "might_clamp",
]
