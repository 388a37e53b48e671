"""The package's thread pools (kernel shares, network passes) work in a forked child too."""

from __future__ import annotations

import multiprocessing

import pytest

from nvalchemi_ase.models.autograd import _pass_threads
from nvalchemi_ase.ops.warp_launch import _cpu_threads

POOLS = {"kernel shares": _cpu_threads, "network passes": _pass_threads}


def _sum_in_a_child(name: str, queue) -> None:
    queue.put(POOLS[name](2).submit(sum, [1, 2]).result(timeout=30))


@pytest.mark.parametrize("name", sorted(POOLS))
def test_a_forked_child_gets_a_pool_of_its_own(name):
    # torch itself (GNU OpenMP) cannot run threaded operations in a forked child, so the pools are
    # checked alone: the parent's, in the child, would take the work and never run it
    assert POOLS[name](2).submit(sum, [1, 2]).result() == 3
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
