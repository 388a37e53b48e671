"""A worker SIGKILLed mid-chunk: Dask runs its chunk again elsewhere; the outputs hold each structure once.

Its own cluster: the death restarts a worker process, which no other test should share.
"""

from __future__ import annotations

import csv
import functools

import ase.io
import numpy as np
import pytest

from nvalchemi_ase.distributed import ChunkPlan, ModelSpec, iter_pipeline, run_chunk
from nvalchemi_ase.distributed.outputs import ChunkWriter
from tests.distributed import chunk_helpers
from tests.tolerances import FLOAT64_ATOL

distributed = pytest.importorskip("distributed")

MODEL = ModelSpec("nvalchemi_ase.models:EMT")
CHUNK_SIZE = 2


def _plan(build) -> ChunkPlan:
    return ChunkPlan(build=build, max_systems=3, device="cpu", trajectory_interval=5, log_interval=5)


def _rows(text: str) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """(step, system, status) of each row, sorted, and the rows' other values in that order."""
    rows = sorted(list(csv.reader(text.splitlines()))[1:], key=lambda row: tuple(map(int, row[:3])))
    return [tuple(map(int, row[:3])) for row in rows], np.array([row[3:] for row in rows], dtype=float)


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
    (keys, values), (clean_keys, clean_values) = _rows(log), _rows(clean_log)
    assert keys == clean_keys  # no log row twice, none missing
    # the workers' torch runs on 1 thread, this process's on more: sums in another order
    assert np.allclose(values, clean_values, rtol=0, atol=FLOAT64_ATOL)
    for index in range(8):
        name = f"system_{index:05d}.traj"
        written = ase.io.read(tmp_path / "out" / "trajectories" / name, ":")
        expected = ase.io.read(tmp_path / "clean" / "trajectories" / name, ":")
        assert [a.info for a in written] == [a.info for a in expected]  # no frame twice, none missing
        assert np.allclose(written[-1].positions, expected[-1].positions, rtol=0, atol=FLOAT64_ATOL)
