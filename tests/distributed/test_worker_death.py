"""Workers SIGKILLed mid-chunk: Dask runs their chunks again elsewhere; the outputs hold each structure once.

A chunk that kills every worker it runs on, or a cluster left with no worker, is
a clear error, never a hang. Each test has its own cluster: deaths restart worker
processes, which no other test should share.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import time
from typing import Any

import ase.io
import numpy as np
import pytest

from nvalchemi_ase.distributed import (
    ChunkPlan,
    DistributedRunError,
    ModelSpec,
    iter_pipeline,
    local_cluster,
    run_chunk,
)
from nvalchemi_ase.distributed.outputs import ChunkWriter
from tests.distributed import chunk_helpers
from tests.tolerances import FLOAT64_ATOL

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

MODEL = ModelSpec("nvalchemi_ase.models:EMT")
CHUNK_SIZE = 2
RESTART_S = 90
"""Ample for a worker process to restart and register (importing torch on a loaded machine)."""
HANG_S = 420
"""A test still running after this has hung: it fails (a machine loaded many times over stays well inside)."""


def _plan(build) -> ChunkPlan:
    return ChunkPlan(build=build, max_systems=3, device="cpu", trajectory_interval=5, log_interval=5)


@contextlib.contextmanager
def _fails_if_it_hangs(seconds: int = HANG_S):
    def expire(signum, frame):
        pytest.fail(f"still running after {seconds} s: the run hung")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_a_worker_killed_mid_chunk_loses_nothing_and_duplicates_nothing(tmp_path):
    marker = tmp_path / "died"
    plan = _plan(functools.partial(chunk_helpers.relax_but_die_once, marker=str(marker)))
    structures = chunk_helpers.structures(8)
    writer = ChunkWriter(tmp_path / "out")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        for result in iter_pipeline(client, structures, MODEL, plan, chunk_size=CHUNK_SIZE):
            writer.write(result)
    assert marker.exists()  # a worker did die mid-chunk (and Dask ran its chunk again elsewhere)
    assert sorted(writer.done) == list(range(8))
    assert [a.info["system_id"] for a in writer.results()] == list(range(8))
    clean = ChunkWriter(tmp_path / "clean")  # every chunk run once, here, by a worker that does not die
    pairs = list(enumerate(structures))
    for start in range(0, len(pairs), CHUNK_SIZE):
        clean.write(run_chunk(pairs[start : start + CHUNK_SIZE], MODEL, _plan(chunk_helpers.relax)))
    log, clean_log = ((folder / "log.csv").read_text() for folder in (tmp_path / "out", tmp_path / "clean"))
    (keys, values), (clean_keys, clean_values) = (
        chunk_helpers.log_rows(log),
        chunk_helpers.log_rows(clean_log),
    )
    assert keys == clean_keys  # no log row twice, none missing
    # the workers' torch runs on 1 thread, this process's on more: sums in another order
    assert np.allclose(values, clean_values, rtol=0, atol=FLOAT64_ATOL)
    for index in range(8):
        name = f"system_{index:05d}.traj"
        written = ase.io.read(tmp_path / "out" / "trajectories" / name, ":")
        expected = ase.io.read(tmp_path / "clean" / "trajectories" / name, ":")
        assert [a.info for a in written] == [a.info for a in expected]  # no frame twice, none missing
        assert np.allclose(written[-1].positions, expected[-1].positions, rtol=0, atol=FLOAT64_ATOL)


def _two_workers_again(client: Any) -> bool:
    """Wait for the cluster's second worker to (re)register; False if it never does."""
    deadline = time.monotonic() + RESTART_S
    while len(client.scheduler_info()["workers"]) < 2:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.slow
def test_one_worker_dying_again_while_a_cluster_timer_runs_keeps_its_nanny(tmp_path):
    """One worker killed 3 times, 14.7 s apart: each run has every structure once; the worker comes back.

    Dask's LocalCluster closes a worker's nanny for good when, 15 s after a death, no worker
    of that name is registered: a second death at 14.7 s, its restart still under way at 15 s,
    left the cluster a worker short, and after a few such deaths with none (a run hung).
    """
    structures = chunk_helpers.structures(8)
    with _fails_if_it_hangs(), local_cluster(2) as cluster, distributed.Client(cluster) as client:
        assert _two_workers_again(client)
        died_at = time.time() - 14.7
        for death in range(3):
            marker = tmp_path / f"died-{death}"
            at = died_at + 14.7  # within the 15 s of the death before, its restart (seconds) under way then
            build = functools.partial(chunk_helpers.relax_but_die_once, marker=str(marker), worker=0, at=at)
            results = list(
                iter_pipeline(client, structures, MODEL, _plan(build), CHUNK_SIZE, idle_timeout=120)
            )
            assert marker.exists(), death  # worker 0 died in this run
            died_at = marker.stat().st_mtime  # written just before the kill
            assert sorted(k for result in results for k in result.indices) == list(range(8)), death
            for result in results:
                assert [a.info["system_id"] for a in result.final] == result.indices
            time.sleep(max(0.0, died_at + 2.0 - time.time()))  # past the 15 s of the death before
            assert len(cluster.workers) == 2, f"death {death}: a worker's nanny was closed for good"
            assert _two_workers_again(client), f"death {death}: the worker did not come back"


def test_a_chunk_that_kills_every_worker_it_runs_on_fails_naming_its_structures():
    plan = _plan(functools.partial(chunk_helpers.relax_but_die_with, system_id=5))
    done = []
    with (
        _fails_if_it_hangs(),
        dask.config.set({"distributed.scheduler.allowed-failures": 1}),  # two deaths, not four
        local_cluster(2) as cluster,
        distributed.Client(cluster) as client,
    ):
        with pytest.raises(DistributedRunError, match=r"structures 4-5 failed: every worker") as failed:
            for result in iter_pipeline(client, chunk_helpers.structures(8), MODEL, plan, CHUNK_SIZE):
                done += result.indices
    assert failed.value.indices == [4, 5]
    assert not {4, 5} & set(done)  # what was yielded is done; the failed chunk is not among it


def test_a_cluster_with_no_worker_fails_after_the_idle_timeout_naming_what_waited():
    with (
        _fails_if_it_hangs(),
        local_cluster(0) as cluster,
        distributed.Client(cluster) as client,
    ):
        run = iter_pipeline(
            client, chunk_helpers.structures(5), MODEL, _plan(chunk_helpers.relax), 2, idle_timeout=2
        )
        with pytest.raises(
            DistributedRunError, match=r"no worker is left on the cluster\); waiting: structures 0-4"
        ):
            next(run)
        assert not client.processing() or not any(client.processing().values())
