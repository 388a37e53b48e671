""":class:`~nvalchemi_ase.dynamics.noise.CounterNoise`'s hashes as warp kernels on a CPU.

The counter-based noise hashes ``(seed, system id, draw count, array, element)``
with SplitMix64's finaliser and turns each hash into a uniform (53 bits). In
torch that is about sixty operations over int64 tensors for Langevin's two
``[N, 3]`` arrays: 300 µs a step for one system of 32 atoms, 550 µs for 64 of
them, most of a Langevin step's cost. Here the system keys are one launch and
each array's uniforms one more, with the same integer arithmetic: the same
bits. Box–Muller's logarithm and cosine stay torch's (vectorised, and the same
numbers as before); the C library's scalar ones cost ~30 ns a normal, more than
torch's for thousands of atoms.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.warp_launch import int32_scalar, launch

wp = initialised_warp()

ROWS_PER_THREAD = 16384
"""Rows below which one thread hashes them all (a hash costs a few ns; a hand-off ~50 µs)."""

_GOLDEN = wp.constant(wp.uint64(0x9E3779B97F4A7C15))
_MIX1 = wp.constant(wp.uint64(0xBF58476D1CE4E5B9))
_MIX2 = wp.constant(wp.uint64(0x94D049BB133111EB))
_ULP53 = wp.constant(wp.float64(2.0**-53))


@wp.func
def _mix(x: wp.uint64) -> wp.uint64:
    """SplitMix64's finaliser (wrapping arithmetic), as ``noise._mix``."""
    x = x + _GOLDEN
    x = (x ^ (x >> wp.uint64(30))) * _MIX1
    x = (x ^ (x >> wp.uint64(27))) * _MIX2
    return x ^ (x >> wp.uint64(31))


@wp.func
def _uniform(key: wp.uint64) -> wp.float64:
    """A uniform in [0, 1) from a hashed key (53 bits), as ``noise._uniform``."""
    return wp.float64(_mix(key) >> wp.uint64(11)) * _ULP53


@wp.kernel(enable_backward=False)
def _system_keys(
    first: wp.int32,
    seed: wp.array(dtype=wp.int64),
    system_id: wp.array(dtype=wp.int64),
    counter: wp.array(dtype=wp.int64),
    counted: wp.int32,
    keys: wp.array(dtype=wp.int64),
    next_counter: wp.array(dtype=wp.int64),
):
    b = first + wp.tid()
    key = _mix(_mix(wp.uint64(seed[0])) ^ wp.uint64(system_id[b]))
    if counted != 0:
        key = _mix(key ^ wp.uint64(counter[b]))
        next_counter[b] = counter[b] + wp.int64(1)
    keys[b] = wp.int64(key)


@wp.kernel(enable_backward=False)
def _uniforms(
    first: wp.int32,
    keys: wp.array(dtype=wp.int64),
    owner: wp.array(dtype=wp.int64),
    ptr: wp.array(dtype=wp.int64),
    per_atom: wp.int32,
    array: wp.int32,
    width: wp.int32,
    pairs: wp.int32,
    first_out: wp.array(dtype=wp.float64),
    second_out: wp.array(dtype=wp.float64),
):
    i = first + wp.tid()
    system = i
    local = wp.int64(0)
    if per_atom != 0:
        system = wp.int32(owner[i])
        local = wp.int64(i) - ptr[system]
    base = wp.uint64(keys[system]) ^ (wp.uint64(array) << wp.uint64(48))
    for c in range(width):
        key = base + wp.uint64(wp.int64(2) * (local * wp.int64(width) + wp.int64(c)))
        if pairs != 0:  # Box-Muller's two: 1 - u in (0, 1], then u' from the next key
            first_out[i * width + c] = wp.float64(1.0) - _uniform(key)
            second_out[i * width + c] = _uniform(key + wp.uint64(1))
        else:
            first_out[i * width + c] = _uniform(key)


_KEYS = Buffers()
_COUNTERS = Buffers()
_VALUES = Buffers()
_NO_COUNTER = torch.zeros(1, dtype=torch.int64)


def fits(device: torch.device) -> bool:
    """Whether the kernels draw for a batch on ``device`` (a CPU)."""
    return device.type == "cpu"


def system_keys(
    seed: torch.Tensor, system_id: torch.Tensor, counter: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[B]`` int64 keys of the systems (seed ``[1]`` int64, the signed bit pattern), and the
    advanced counter (a new tensor; None without one): ``noise.CounterNoise.draw``'s first lines."""
    count = system_id.shape[0]
    keys = _KEYS.take((count,), torch.int64, system_id.device)
    advanced = None if counter is None else _COUNTERS.take((count,), torch.int64, system_id.device)
    inputs = [
        view(seed),
        view(system_id),
        view(_NO_COUNTER if counter is None else counter),
        int32_scalar(0 if counter is None else 1),
        view(keys),
        view(_NO_COUNTER if advanced is None else advanced),
    ]
    launch(_system_keys, count, inputs, system_id.device, 1 << 30)
    return keys, advanced


def uniforms(
    keys: torch.Tensor,
    owner: torch.Tensor | None,
    ptr: torch.Tensor,
    array: int,
    width: int,
    pairs: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``[rows, width]`` float64 uniforms in [0, 1) of array ``array``, one row per atom (``owner``
    ``[N]``, each atom's system; ``ptr`` ``[B + 1]``) or per system (None); with ``pairs``, Box–Muller's
    two inputs instead: ``1 - u`` and the next key's ``u'`` (the source turns them into normals)."""
    rows = keys.shape[0] if owner is None else owner.shape[0]
    first = _VALUES.take((rows * width,), torch.float64, keys.device)
    second = _VALUES.take((rows * width,), torch.float64, keys.device) if pairs else None
    inputs = [
        view(keys),
        view(keys if owner is None else owner),
        view(ptr),
        int32_scalar(0 if owner is None else 1),
        int32_scalar(array),
        int32_scalar(width),
        int32_scalar(1 if pairs else 0),
        view(first),
        view(first if second is None else second),
    ]
    launch(_uniforms, rows, inputs, keys.device, ROWS_PER_THREAD)
    return first.view(rows, width), None if second is None else second.view(rows, width)
