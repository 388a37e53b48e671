"""Launching our warp kernels cheaply: cached array views, recorded launches, rows split over threads.

Every fused kernel of the package (pair sums, EMT, the velocity-Verlet moves)
goes through :func:`launch`. On a small system the launch itself is what a
step costs, so nothing here is done twice: warp's view of a tensor is cached by
address and layout, a launch is recorded once per row range and set of views,
and on a CPU a new one is made from the kernel's last by packing again only what
changed (its first row, its row count, the views that differ). On a CPU the
rows are split over torch's threads (the calling thread and :mod:`~nvalchemi_ase.ops.kernel_threads`'
workers, handed their shares without waking from sleep); each row is written by
exactly one launch, so results do not depend on the number of threads.
"""

from __future__ import annotations

import ctypes
import functools
import itertools
from typing import Any, NamedTuple

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops import kernel_threads

wp = initialised_warp()

ROWS_PER_THREAD = 256
"""On a CPU, rows per launch below which one thread does all the rows (threads cost ~50 µs).

Measured on 2 cores, LJ argon 8 x 108 atoms: 256 gave 1.29x the steps per second of 1024."""


def launch(
    kernel: Any, rows: int, inputs: list[Any], device: torch.device, rows_per_thread: int | None = None
) -> None:
    """Run ``kernel`` over ``rows`` rows: one launch on a GPU, split over torch's threads on a CPU.

    The kernel's first argument is the first row of its range (``first + wp.tid()``);
    ``inputs`` are the others. ``rows_per_thread`` (default :data:`ROWS_PER_THREAD`)
    is the fewest rows worth a thread of their own. Warp runs a CPU launch on the
    calling thread and releases the GIL while it runs, so launches over disjoint
    row ranges, one on the calling thread and the others on a pool's threads, run
    in parallel.
    """
    per_thread = ROWS_PER_THREAD if rows_per_thread is None else rows_per_thread
    threads = min(torch.get_num_threads(), rows // per_thread)
    if device.type != "cpu" or threads < 2:
        _recorded(kernel, 0, rows, device, inputs).launch()
        return
    _load_on_cpu(kernel)  # compiling or loading must not race between the threads
    bounds = [rows * k // threads for k in range(threads + 1)]
    ranges = itertools.pairwise(bounds)
    shares = [_recorded(kernel, start, end - start, device, inputs) for start, end in ranges]
    # the calling thread runs the first share itself: one thread fewer to wake, and no wait for
    # a worker to get the GIL back before the step goes on
    _in_parallel([share.launch for share in shares], [()] * len(shares))


def launch_shares(shares: list[list[tuple[Any, int, int, list[Any]]]], device: torch.device) -> None:
    """Run row ranges grouped into shares: each share's launches in order on one thread.

    ``shares`` lists, per share, its ``(kernel, first row, rows, inputs)``
    launches (CPU only); the shares run in parallel, the calling thread running
    the first. For kernels whose rows write to other rows (Newton's third law):
    the caller puts rows that write to each other into one share, or gives each
    range its own outputs, so that results do not depend on the number of shares.
    """
    recorded = []
    for share in shares:
        for kernel, *_ in share:
            _load_on_cpu(kernel)  # compiling or loading must not race between the threads
        recorded.append(
            [_recorded(kernel, first, rows, device, inputs) for kernel, first, rows, inputs in share]
        )
    _in_parallel([_run_in_order] * len(recorded), [(share,) for share in recorded])


def _run_in_order(launches: list[Any]) -> None:
    for recorded in launches:
        recorded.launch()


def _in_parallel(functions: list[Any], args: list[tuple[Any, ...]]) -> None:
    """``functions[k](*args[k])`` for every k: the first on this thread, the others on the kernel threads.

    Waits for all of them (also when the first raises), then raises the first error.
    """
    helpers = kernel_threads.workers(len(functions) - 1) if len(functions) > 1 else ()
    for helper, function, arguments in zip(helpers, functions[1:], args[1:], strict=True):
        helper.submit(function, *arguments)
    error: BaseException | None = None
    try:
        functions[0](*args[0])
    except BaseException as raised:  # the helpers still write into the same tensors: wait for them
        error = raised
    for helper in helpers:
        try:
            helper.result()
        except BaseException as raised:
            error = error or raised
    if error is not None:
        raise error


_DESCRIPTORS: dict[tuple, Any] = {}
_LAUNCHES: dict[tuple, dict[tuple, tuple[tuple, Any]]] = {}
_CACHE_SIZE = 1024
_VARIANTS = 8


def descriptor(tensor: torch.Tensor, dtype: Any = None) -> Any:
    """Warp's view of ``tensor`` (no copy, no reference to the tensor), cached by address and layout.

    ``wp.from_torch`` costs microseconds per argument and a launch has ten: on a
    small system that was most of a step. A view depends only on the address,
    shape, strides, dtype and device, so a cached one is exactly right for any
    later tensor with the same memory and layout (tensors freed and allocated
    again at the same address included). The cache holds no tensor: one that
    did would keep its memory, so each step's new positions and forces would get
    new addresses and miss. The caller keeps the tensor alive while the kernel runs.
    """
    key = (tensor.data_ptr(), tensor.shape, tensor.stride(), tensor.dtype, tensor.device, dtype)
    found = _DESCRIPTORS.get(key)
    if found is None:
        if len(_DESCRIPTORS) >= _CACHE_SIZE:
            _DESCRIPTORS.clear()
        found = wp.from_torch(tensor, dtype=dtype, return_ctype=True)
        found._ref = found._gradref = None
        _DESCRIPTORS[key] = found
    return found


def _recorded(kernel: Any, first: int, rows: int, device: torch.device, inputs: list[Any]) -> Any:
    """A recorded warp launch of ``kernel`` over rows ``first .. first + rows`` with ``inputs`` set.

    Packing the arguments costs more than a small kernel: a launch is recorded
    once per set of argument views (:data:`_VARIANTS` of them per row range)
    and reused as it is when the same views come back, which is the rule in a
    run (the allocator hands the same few addresses out in turn for each
    step's new positions, velocities and forces). Past that many, the oldest
    is dropped, or on a GPU re-packed with the arguments that changed. On a CPU
    a launch not seen before is the kernel's last one resized
    (:meth:`_CpuLaunch.resized`): a rebuild's kernels run over other rows at
    nearly every call, and recording each anew cost ~70 µs a launch.
    """
    key = (kernel, first, rows, device)
    variants = _LAUNCHES.get(key)
    if variants is None:
        if len(_LAUNCHES) >= _CACHE_SIZE:
            _LAUNCHES.clear()
        variants = _LAUNCHES[key] = {}
    # keyed by the views' ids; each entry holds its views, so no id is reused while it is kept
    ids = tuple(map(id, inputs))
    found = variants.get(ids)
    if found is not None:
        return found[1]
    if len(variants) >= _VARIANTS:
        held, oldest = variants.pop(next(iter(variants)))
        if not isinstance(oldest, _CpuLaunch):  # warp's own launch (a GPU's): re-packed in place
            for index, (before, now) in enumerate(zip(held, inputs, strict=True)):
                if before is not now:
                    oldest.set_param_at_index(index + 1, now)
            variants[ids] = (tuple(inputs), oldest)
            return oldest
    last = _LAST.get((kernel, device))
    if last is not None:
        launcher = last.resized(first, rows, inputs)
    else:
        stream = wp.stream_from_torch(device) if device.type == "cuda" else None
        command = wp.launch(
            kernel,
            dim=rows,
            inputs=[first, *inputs],
            device=wp.device_from_torch(device),
            stream=stream,
            record_cmd=True,
        )
        launcher = _direct(command, inputs)
    if isinstance(launcher, _CpuLaunch):
        _LAST[(kernel, device)] = launcher
    variants[ids] = (tuple(inputs), launcher)
    return launcher


_LAST: dict[tuple, _CpuLaunch] = {}
"""Per CPU kernel, its last packed launch: the one the next new row range or views are made from."""


class _CpuLaunch:
    """A recorded CPU launch whose ``launch()`` calls the compiled kernel with its arguments packed once.

    Warp's own ``Launch.launch()`` on a CPU builds the kernel's ctypes argument
    struct anew at every call (an assignment per argument: ~5 µs for our kernels,
    more than the kernel of a small system); this one builds it when the launch
    is recorded or resized, and then only calls.

    It holds its recorded launch, and with it the module's compiled code that
    ``forward`` points into: a module that gained a kernel is compiled and loaded
    again, and its earlier code is unloaded once no recorded launch holds it. A
    launcher kept past the caches' clearing (a launch list being run) would
    otherwise call freed code. Launches resized from it hold the same.
    """

    __slots__ = ("_args", "_bounds", "_command", "_forward", "_inputs", "_packed", "_range")

    def __init__(self, command: Any, forward: Any, bounds: Any, args: Any, inputs: tuple) -> None:
        self._command, self._forward, self._inputs = command, forward, inputs
        self._bounds, self._args = bounds, args  # the ctypes structs the references point into
        self._range, self._packed = ctypes.byref(bounds), ctypes.byref(args)

    def launch(self) -> None:
        self._forward(self._range, self._packed)

    def resized(self, first: int, rows: int, inputs: list[Any]) -> _CpuLaunch:
        """This kernel over rows ``first .. first + rows`` with ``inputs``: a copy of the packed arguments
        with ``first`` and the inputs that are other objects than this launch's packed again."""
        command = self._command
        kernel = command.kernel
        args = type(self._args).from_buffer_copy(self._args)
        first_arg, *others = kernel.adj.args
        assert _packing is not None  # a _CpuLaunch is made only with warp's packing helpers
        pack = _packing.pack_arg
        setattr(args, first_arg.label, pack(kernel, first_arg.type, first_arg.label, first, command.device))
        for arg, before, now in zip(others, self._inputs, inputs, strict=True):
            if before is not now:
                setattr(args, arg.label, pack(kernel, arg.type, arg.label, now, command.device))
        bounds = _packing.launch_bounds((rows,), kernel.adj.kernel_dim)
        return _CpuLaunch(command, self._forward, bounds, args, tuple(inputs))


def _direct(command: Any, inputs: list[Any] | None = None) -> Any:
    """A :class:`_CpuLaunch` for a recorded plain CPU launch; ``command`` itself otherwise (a GPU,
    a warp without the struct builder this relies on). ``inputs`` are the objects packed after
    ``first`` (None: the launch is never resized)."""
    if _packing is None or not command.device.is_cpu or command.adjoint or command.block_dim > 1:
        return command
    try:
        args, _ = _packing.build_cpu_args_structs(command.kernel, command.hooks, command.params, False)
        forward = command.hooks.forward
        bounds = command.params[0]
    except AttributeError:
        return command
    if not forward:
        return command
    return _CpuLaunch(command, forward, bounds, args, () if inputs is None else tuple(inputs))


class _Packing(NamedTuple):
    """Warp's private helpers that pack a CPU launch (present in the warp this package is tested on)."""

    build_cpu_args_structs: Any
    pack_arg: Any
    launch_bounds: Any


def _warp_packing() -> _Packing | None:
    """Warp's packing helpers; None in a warp without them (launches then stay warp's own)."""
    try:
        from warp._src.context import _build_cpu_args_structs, _build_launch_bounds_from_tuple, pack_arg
    except ImportError:
        return None
    return _Packing(_build_cpu_args_structs, pack_arg, _build_launch_bounds_from_tuple)


_packing = _warp_packing()


@functools.cache
def _load_on_cpu(kernel: Any) -> None:
    wp.load_module(kernel.module, device="cpu")


def float64_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` as a contiguous float64 tensor without autograd history (itself when it already is)."""
    if tensor.dtype == torch.float64 and not tensor.requires_grad and tensor.is_contiguous():
        return tensor  # attribute checks cost less than three no-op dispatches
    return tensor.detach().to(torch.float64).contiguous()


@functools.lru_cache(maxsize=64)
def float64_scalar(value: float) -> Any:
    """One warp scalar per value, so a recorded launch sees the same object while it is unchanged."""
    return wp.float64(value)


@functools.lru_cache(maxsize=64)
def int32_scalar(value: int) -> Any:
    """:func:`float64_scalar` for int32 arguments (flags, widths)."""
    return wp.int32(value)
