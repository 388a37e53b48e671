"""Dask runs on a LocalCluster of 2 worker processes: the same results as one process, each structure once."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nvalchemi_ase.distributed import (
    ChunkPlan,
    ModelSpec,
    iter_pipeline,
    require_dask,
    run_chunk,
    run_pipeline,
)
from nvalchemi_ase.distributed.outputs import ChunkWriter
from nvalchemi_ase.dynamics import FusedStage, InflightSampler
from nvalchemi_ase.models import EMT
from tests.distributed import chunk_helpers
from tests.tolerances import FLOAT64_ATOL

distributed = pytest.importorskip("distributed")

MODEL = ModelSpec("nvalchemi_ase.models:EMT")
PLAN = ChunkPlan(
    build=chunk_helpers.relax, max_systems=3, device="cpu", trajectory_interval=5, log_interval=5
)


@pytest.fixture(scope="module")
def client():
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        yield client


def test_two_workers_give_the_one_process_results_structure_by_structure(client):
    structures = chunk_helpers.structures(10)
    arrived = []
    final = run_pipeline(client, structures, MODEL, PLAN, chunk_size=3, on_chunk=arrived.append)
    one_process = FusedStage([chunk_helpers.relax(EMT())])
    alone = one_process.run_inflight(InflightSampler(structures, max_systems=3, device="cpu"))
    assert [a.info["system_id"] for a in final] == list(range(10))
    for one, other in zip(alone, final, strict=True):
        assert np.allclose(one.positions, other.positions, rtol=0, atol=FLOAT64_ATOL)
        assert one.get_potential_energy() == pytest.approx(other.get_potential_energy(), abs=FLOAT64_ATOL)
    assert sorted(k for chunk in arrived for k in chunk.indices) == list(range(10))


def test_finished_structures_are_skipped(client):
    structures = chunk_helpers.structures(6)
    results = list(iter_pipeline(client, structures, MODEL, PLAN, chunk_size=4, skip=[0, 1, 2, 4]))
    assert sorted(k for chunk in results for k in chunk.indices) == [3, 5]


def test_the_writer_resumes_after_a_kill_between_appends_and_the_record(tmp_path):
    structures = chunk_helpers.structures(4)
    first = run_chunk(list(enumerate(structures))[:2], MODEL, PLAN)
    second = run_chunk(list(enumerate(structures))[2:], MODEL, PLAN)
    clean = ChunkWriter(tmp_path / "clean")
    clean.write(first)
    clean.write(second)
    out = tmp_path / "killed"
    ChunkWriter(out).write(first)
    with open(out / "log.csv", "a") as log:  # the second chunk's rows half appended, then a kill
        log.write("12,3,0,-1.5")
    resumed = ChunkWriter(out, resume=True)
    assert resumed.done == [0, 1]
    resumed.write(second)
    assert (out / "log.csv").read_text() == (tmp_path / "clean" / "log.csv").read_text()
    assert [a.info["system_id"] for a in resumed.results()] == [0, 1, 2, 3]


def test_without_dask_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"nvalchemi-ase\[distributed\]"):
        require_dask()
