"""The threads that run a CPU launch's other shares, handed their work without waking from sleep.

A kernel split over two cores gives its second share to another thread and waits
for it at the end. Through a queue and a condition (``ThreadPoolExecutor``), each
hand-off wakes a sleeping thread, and on a virtual machine a sleeping core is
slow to wake: in NVE steps of 16 argon cells of 108 atoms on our 2-core VM, the
second share started 81 µs (median) after the launch began, and the launch
returned 63 µs after both shares had finished, ~150 µs of a 0.43 ms pair-kernel
call. Here a thread that finished a share waits for the next one in a warp kernel
polling a flag (native code, the GIL released as in any launch) for about a
millisecond before it sleeps on a semaphore, and the caller waits for the shares
the same way: the second share then starts 24 µs after the launch begins and the
launch returns 16 µs after the shares (same probe). Between the steps of a
run the threads stay awake polling, as OpenMP's threads do; an idle process
sleeps.

The semaphores carry every hand-off (a poll only saves the sleep), so a slow
share or a long pause between steps is never missed, only slower.
"""

from __future__ import annotations

import atexit
import functools
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp

wp = initialised_warp()

POLLS = 1 << 22
"""Reads of a flag before a waiting thread sleeps (1.4 ms on our CPU: ~0.3 ns a read)."""

LINGER = 30000
"""Idle loops (~9 µs on our CPU) after a flag is seen, so that the thread that set it has reached
its next native call (which releases the GIL) before this one asks for the GIL back: asking while
it is held puts this thread to sleep on the GIL, and waking it costs tens of microseconds on a
virtual machine (measured: 10,000 loops left 52 µs from the end of the last share to the end of
the launch, 30,000 left 17 µs, 100,000 37 µs)."""

_POLL = """
    volatile int* value = (volatile int*)(flag.data);
    volatile int* wanted = (volatile int*)(expected.data);
    int k = 0;
    while (*value != *wanted && k < polls) { ++k; }
    if (k > 0 && k < polls) {  // just seen: let the other thread reach its native call (it holds the GIL)
        for (volatile int d = 0; d < linger; ++d) {}
    }
"""
"""C++: volatile reads (warp's array reads and CPU atomics are not), so each poll reads memory."""


@wp.func_native(_POLL)
def _poll_until(
    flag: wp.array(dtype=wp.int32), expected: wp.array(dtype=wp.int32), polls: wp.int32, linger: wp.int32
): ...


@functools.cache
def _poll_kernel() -> Any:
    @wp.kernel(enable_backward=False)
    def poll(
        first: wp.int32,
        flag: wp.array(dtype=wp.int32),
        expected: wp.array(dtype=wp.int32),
        polls: wp.int32,
        linger: wp.int32,
    ):
        _poll_until(flag, expected, polls, linger)

    return poll


class _Flag:
    """A sequence number one thread sets and another waits for: polled first, then slept on."""

    def __init__(self) -> None:
        self._value = torch.zeros(1, dtype=torch.int32)
        self._expected = torch.zeros(1, dtype=torch.int32)
        self._value_host, self._expected_host = self._value.numpy(), self._expected.numpy()
        self._semaphore = threading.Semaphore(0)
        # recorded here, on the thread that makes the flag: loading a module must not race
        from nvalchemi_ase.ops.warp_launch import _direct

        kernel = _poll_kernel()
        wp.load_module(kernel.module, device="cpu")
        flags = [wp.from_torch(self._value), wp.from_torch(self._expected)]
        inputs = [0, *flags, wp.int32(POLLS), wp.int32(LINGER)]
        self._poll = _direct(wp.launch(kernel, dim=1, inputs=inputs, device="cpu", record_cmd=True))

    def set(self, number: int) -> None:
        self._value_host[0] = number
        self._semaphore.release()

    def wait(self, number: int) -> None:
        if not _closing.is_set():
            self._expected_host[0] = number
            self._poll.launch()
        self._semaphore.acquire()


class Worker:
    """One thread that runs the callables it is given, one at a time."""

    def __init__(self, name: str) -> None:
        self._posted, self._finished = _Flag(), _Flag()
        self._task: tuple[Callable[..., Any], tuple[Any, ...]] | None = None
        self._outcome: tuple[Any, BaseException | None] = (None, None)
        self._number = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, function: Callable[..., Any], *args: Any) -> None:
        """Start ``function(*args)`` on this thread; :meth:`result` waits for it."""
        self._number += 1
        self._task = (function, args)
        self._posted.set(self._number)

    def result(self) -> Any:
        """Wait for the last submitted call; its return value, or its exception raised here."""
        self._finished.wait(self._number)
        (value, error), self._outcome = self._outcome, (None, None)
        if error is not None:
            raise error
        return value

    def _run(self) -> None:
        number = 0
        while True:
            number += 1
            self._posted.wait(number)
            assert self._task is not None
            function, args = self._task
            try:
                self._outcome = (function(*args), None)
            except BaseException as error:  # handed to the caller by result()
                self._outcome = (None, error)
            self._finished.set(number)


@functools.cache
def workers(count: int) -> tuple[Worker, ...]:
    """``count`` threads for the shares of launches split ``count + 1`` ways (made once per count)."""
    return tuple(Worker(f"nvalchemi_ase-kernels-{k}") for k in range(count))


_closing = threading.Event()
"""Set at exit: waiting threads sleep at once instead of polling memory the interpreter is tearing down."""


@atexit.register
def _stop_polling() -> None:
    _closing.set()
    if workers.cache_info().currsize:
        time.sleep(0.005)  # a poll under way ends within its ~1 ms


# a forked child has none of its parent's threads: the parent's workers there would never run
os.register_at_fork(after_in_child=workers.cache_clear)
