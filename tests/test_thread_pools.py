"""The package's thread pools (kernel shares, network passes) work in a forked child too."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from nvalchemi_ase.models.autograd import _pass_threads
from nvalchemi_ase.ops.kernel_threads import workers


def _kernel_worker_sum(values: list[int]) -> int:
    (worker,) = workers(1)
    worker.submit(sum, values)
    return worker.result()


def _pass_sum(values: list[int]) -> int:
    return _pass_threads(2, False).submit(sum, values).result(timeout=30)


def _flushing_pass_sum(values: list[int]) -> int:
    return _pass_threads(1, True).submit(sum, values).result(timeout=30)


POOLS = {
    "kernel shares": _kernel_worker_sum,
    "network passes": _pass_sum,
    "network passes, flushing subnormals": _flushing_pass_sum,
}


def _sum_in_a_child(name: str, queue) -> None:
    queue.put(POOLS[name]([1, 2]))


@pytest.mark.parametrize("name", sorted(POOLS))
def test_a_forked_child_gets_a_pool_of_its_own(name):
    # torch itself (GNU OpenMP) cannot run threaded operations in a forked child, so the pools are
    # checked alone: the parent's, in the child, would take the work and never run it
    assert POOLS[name]([1, 2]) == 3
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_sum_in_a_child, args=(name, queue))
    child.start()
    try:
        assert queue.get(timeout=60) == 3
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


def test_a_kernel_worker_runs_calls_in_turn_and_hands_back_errors():
    (worker,) = workers(1)
    for k in range(200):  # hand-offs polled and hand-offs slept on (a pause past the poll) alike
        worker.submit(pow, k, 2)
        if k % 50 == 0:
            time.sleep(0.01)
        assert worker.result() == k * k
    worker.submit(int, "not a number")
    with pytest.raises(ValueError, match="not a number"):
        worker.result()
    worker.submit(sum, [4, 5])  # the worker goes on after an error
    assert worker.result() == 9


def test_a_split_launch_waits_for_every_share_and_raises_the_first_error():
    from nvalchemi_ase.ops.warp_launch import _in_parallel

    done = []

    def slow(tag):
        time.sleep(0.02)
        done.append(tag)

    def fails(tag):
        raise RuntimeError(tag)

    with pytest.raises(RuntimeError, match="first"):
        _in_parallel([fails, slow], [("first",), ("second",)])
    assert done == ["second"]  # the other share had finished when the error came out
