"""The noise source: where every random number a stochastic engine uses comes from.

An engine owns one source and asks it, once or twice per step, for a list of
:class:`Draw` s (e.g. Langevin's ξ then η, ``[N, 3]`` standard normals each).
Two sources ship:

- :class:`CounterNoise` (the engines' default): counter-based torch noise on
  the batch's device. A system's numbers are a function of ``(seed,
  system_id, draw count)`` only, so its trajectory does not depend on which
  other systems share its batch, their order, or its inflight slot.
- :class:`NumpyNoise`: ASE's per-system numpy streams, drawn in the order
  ASE's classes draw them (the look-alikes' source; the same numbers as ASE).

A source is any object with ``draw(batch, draws) -> list[Tensor]``
(:class:`NoiseSource`), so wrappers (the look-alike's host redistribution of
Langevin noise) compose.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum, xyz_sum

__all__ = ["COUNTER_FIELD", "CounterNoise", "Draw", "NoiseSource", "NumpyNoise", "noise_source"]

COUNTER_FIELD = "noise_counter"
"""Per-system batch field (int64): how many draws :class:`CounterNoise` made for each system."""


class Draw(NamedTuple):
    """One array of random numbers, named by the numpy method that draws it in ASE.

    Parameters
    ----------
    method
        ``"standard_normal"``, ``"normal"`` (loc 0, scale 1), ``"random"``
        (uniform in [0, 1)) or ``"standard_gamma"``.
    per_atom
        True: ``[N, *shape]`` (numpy draws ``(n, *shape)`` per system); False: ``[B, *shape]``.
    shape
        The trailing shape (``()`` draws one scalar per system).
    argument
        ``standard_gamma``'s ``[B]`` shape parameter k (device tensor).
    host_argument
        The same on the host when the engine knows it there (spares a device read).
    """

    method: str
    per_atom: bool
    shape: tuple[int, ...] = ()
    argument: torch.Tensor | None = None
    host_argument: np.ndarray | None = None


@runtime_checkable
class NoiseSource(Protocol):
    """Anything that returns the draws asked for, one tensor each, on the batch's device and dtype."""

    def draw(self, batch: Batch, draws: Sequence[Draw]) -> list[torch.Tensor]: ...


def noise_source(seed: int | None = None, noise: NoiseSource | None = None) -> NoiseSource:
    """The engine's source: ``noise`` when given, else :class:`CounterNoise` with ``seed``."""
    if noise is not None:
        if not isinstance(noise, NoiseSource):
            raise TypeError(f"noise must have draw(batch, draws), got {noise!r}")
        return noise
    return CounterNoise(seed)


# ---------------------------------------------------------------------- counter-based torch noise
_MASK64 = (1 << 64) - 1


def _signed(value: int) -> int:
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


_GOLDEN = _signed(0x9E3779B97F4A7C15)
_MIX1 = _signed(0xBF58476D1CE4E5B9)
_MIX2 = _signed(0x94D049BB133111EB)


def _shift(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def _mix(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on int64 tensors (wrapping arithmetic): a bijective hash of 64 bits."""
    x = x + _GOLDEN
    x = (x ^ _shift(x, 30)) * _MIX1
    x = (x ^ _shift(x, 27)) * _MIX2
    return x ^ _shift(x, 31)


def _uniform(keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Uniforms in [0, 1) from hashed keys (53 bits, float64 resolution)."""
    return _shift(_mix(keys), 11).to(torch.float64).mul_(2.0**-53).to(dtype)


class CounterNoise:
    """Counter-based noise: each number is a hash of (seed, system id, draw count, array, element).

    Parameters
    ----------
    seed
        Any integer (``None``: a random one, drawn once).
    counter
        The per-system batch field counting the draws (``None``: no counter,
        the numbers depend on (seed, system id) only: for one-off draws such
        as initial velocities).

    Notes
    -----
    The draw count is the per-system batch field ``noise_counter``, created
    at zero for systems that lack it and advanced by one per :meth:`draw`
    call. Normals come from Box–Muller on two independent uniforms; a
    ``standard_gamma`` draw of shape k (2k an integer, at most 3 × the
    system's atoms, as Bussi's (N_f − 1)/2) is half a χ² built from 2k squared
    normals. No host sync, no generator state.
    """

    def __init__(self, seed: int | None = None, counter: str | None = COUNTER_FIELD) -> None:
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
        self.seed = int(seed)
        self.counter = counter
        self._seed_tensor = (self.seed, torch.tensor([_signed(self.seed)], dtype=torch.long))

    def __repr__(self) -> str:
        return f"CounterNoise(seed={self.seed})"

    def draw(self, batch: Batch, draws: Sequence[Draw]) -> list[torch.Tensor]:
        counter = None
        if self.counter is not None:
            if self.counter not in batch.field_names():
                zeros = torch.zeros(batch.num_graphs, dtype=torch.long, device=batch.device)
                batch.add_field(self.counter, zeros, Scope.SYSTEM)
            counter = getattr(batch, self.counter)
        if _on_kernels(batch.device):  # the same hashes in one launch
            system_keys, advanced = _kernels().system_keys(self._seed_argument(), batch.system_id, counter)
        else:
            seed = torch.full_like(batch.system_id, _signed(self.seed), dtype=torch.long)
            system_keys = _mix(_mix(seed) ^ batch.system_id)
            if counter is not None:
                system_keys = _mix(system_keys ^ counter)
            advanced = None if counter is None else counter + 1
        if self.counter is not None:
            setattr(batch, self.counter, advanced)
        return [self._one(batch, system_keys, k, draw) for k, draw in enumerate(draws)]

    def _seed_argument(self) -> torch.Tensor:
        """``seed`` as the CPU kernel's ``[1]`` int64 argument: one tensor while the seed is unchanged
        (so its warp view and the recorded launch are found again)."""
        if self._seed_tensor[0] != self.seed:
            self._seed_tensor = (self.seed, torch.tensor([_signed(self.seed)], dtype=torch.long))
        return self._seed_tensor[1]

    def _one(self, batch: Batch, system_keys: torch.Tensor, array: int, draw: Draw) -> torch.Tensor:
        if draw.method == "standard_gamma":
            assert draw.argument is not None, "standard_gamma needs its shape argument"
            return self._gamma(batch, system_keys, array, draw.argument)
        width = math.prod(draw.shape)
        device = batch.device
        if draw.method not in ("random", "standard_normal", "normal"):
            raise ValueError(f"unknown draw method {draw.method!r}")
        if _on_kernels(device):
            owner = batch.batch_idx if draw.per_atom else None
            pairs = draw.method != "random"
            first, second = _kernels().uniforms(system_keys, owner, batch.ptr, array, width, pairs)
            values = first.to(batch.dtype) if second is None else _box_muller(first, second, batch.dtype)
            return values.view(first.shape[0], *draw.shape)
        if draw.per_atom:
            owners, rows = batch.batch_idx, _local_index(batch)
        else:
            owners = torch.arange(batch.num_graphs, device=device)
            rows = torch.zeros_like(owners)
        element = rows.unsqueeze(1) * width + torch.arange(width, device=device)
        keys = (system_keys.index_select(0, owners) ^ (array << 48)).unsqueeze(1) + 2 * element
        values = self._values(draw.method, keys, batch.dtype)
        return values.reshape(owners.shape[0], *draw.shape)

    @staticmethod
    def _values(method: str, keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if method == "random":
            return _uniform(keys, dtype)
        if method not in ("standard_normal", "normal"):
            raise ValueError(f"unknown draw method {method!r}")
        u1 = 1.0 - _uniform(keys, torch.float64)  # (0, 1]
        return _box_muller(u1, _uniform(keys + 1, torch.float64), dtype)

    def _gamma(self, batch: Batch, keys: torch.Tensor, array: int, shape: torch.Tensor) -> torch.Tensor:
        normals = self._one(batch, keys, array, Draw("standard_normal", True, (3,)))
        index = 3 * _local_index(batch).unsqueeze(1) + torch.arange(3, device=batch.device)
        count = segment_broadcast(2.0 * shape, batch.batch_idx).unsqueeze(1)
        squares = torch.where(index < count, normals * normals, torch.zeros_like(normals))
        return 0.5 * segment_sum(xyz_sum(squares), batch.batch_idx, batch.num_graphs)


def _box_muller(u1: torch.Tensor, u2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Standard normals from uniforms ``u1`` in (0, 1] and ``u2`` in [0, 1) (float64, then ``dtype``)."""
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def _on_kernels(device: torch.device) -> bool:
    """Whether the hashes are made by :mod:`nvalchemi_ase.ops.noise_kernel` (on a CPU: torch's
    sixty-odd integer operations cost 300 µs for Langevin's two arrays of one 32-atom system)."""
    return device.type == "cpu"


@functools.cache
def _kernels() -> Any:
    """:mod:`nvalchemi_ase.ops.noise_kernel`, imported on first use (it loads warp)."""
    from nvalchemi_ase.ops import noise_kernel

    return noise_kernel


def _local_index(batch: Batch) -> torch.Tensor:
    """``[N]`` each atom's index within its system."""
    return torch.arange(batch.num_nodes, device=batch.device) - batch.ptr.index_select(0, batch.batch_idx)


# ---------------------------------------------------------------------- ASE's numpy streams
class NumpyNoise:
    """ASE's random streams: numpy generators drawn per system, in system order, as ASE's classes draw.

    Parameters
    ----------
    rng
        One generator (shared: each call draws every array for system 0,
        then for system 1, ...; as B ASE objects sharing it, stepped in turn)
        or a sequence with one per system (each system then reproduces ASE
        run alone with its generator). Anything with the numpy methods the
        draws name (``standard_normal``, ``normal``, ``random``, ``standard_gamma``).
    """

    def __init__(self, rng: Any) -> None:
        self.rng = rng

    def __repr__(self) -> str:
        return f"NumpyNoise({self.rng!r})"

    def draw(self, batch: Batch, draws: Sequence[Draw]) -> list[torch.Tensor]:
        count = batch.num_graphs
        generators = list(self.rng) if isinstance(self.rng, list | tuple) else [self.rng] * count
        if len(generators) != count:
            raise ValueError(f"rng: {len(generators)} generators for {count} systems")
        arguments = [_host(draw) for draw in draws]
        columns: list[list[np.ndarray]] = [[] for _ in draws]
        for b, (generator, atoms) in enumerate(zip(generators, batch.counts, strict=True)):
            for column, draw, argument in zip(columns, draws, arguments, strict=True):
                value = None if argument is None else float(argument[b])
                column.append(_numpy_draw(generator, draw, int(atoms), value))
        joined = [
            np.concatenate(c) if d.per_atom else np.stack(c) for c, d in zip(columns, draws, strict=True)
        ]
        return [to_device(values, batch) for values in joined]


def _host(draw: Draw) -> np.ndarray | None:
    if draw.host_argument is not None:
        return np.asarray(draw.host_argument, dtype=float)
    if draw.argument is not None:
        return draw.argument.detach().cpu().numpy().astype(float)
    return None


def _numpy_draw(generator: Any, draw: Draw, atoms: int, argument: float | None) -> np.ndarray:
    size = (atoms, *draw.shape) if draw.per_atom else draw.shape
    method = getattr(generator, draw.method)
    if draw.method == "standard_gamma":
        return np.asarray(method(argument) if not size else method(argument, size=size), dtype=float)
    return np.asarray(method() if not size else method(size=size), dtype=float)


def to_device(values: np.ndarray, batch: Batch) -> torch.Tensor:
    """Host draws onto the batch's device and dtype (pinned and non-blocking on CUDA: no sync)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values)).to(batch.dtype)
    if batch.device.type == "cuda":
        return tensor.pin_memory().to(batch.device, non_blocking=True)
    return tensor.to(batch.device)
