"""The command line on Dask: ``--workers N`` and ``--scheduler ADDRESS`` write the one-process files."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_OK, main
from tests.distributed import chunk_helpers
from tests.tolerances import FLOAT64_ATOL

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

OPTIONS = ["--model", "emt", "--device", "cpu", "--steps", "6", "--relax-steps", "20", "-q"]
OPTIONS += ["--max-systems", "2", "--trajectory-interval", "3", "--log-interval", "3"]
SAME_IN_BOTH = ("systems", "finished", "relaxed", "unconverged", "set_aside", "interrupted")
"""Summary fields a distributed run shares with a one-process run (not timings or step counts)."""


def _input(tmp_path: Path, count: int) -> Path:
    frames = chunk_helpers.structures(count)
    frames[1].positions[1] = frames[1].positions[0] + [0.1, 0.0, 0.0]  # overlapping atoms: set aside
    path = tmp_path / "input.extxyz"
    ase.io.write(path, frames)
    return path


def _assert_same_structures_and_files(one: Path, other: Path) -> None:
    finals = [ase.io.read(folder / "final.extxyz", ":") for folder in (one, other)]
    assert [a.info["system_id"] for a in finals[0]] == [a.info["system_id"] for a in finals[1]]
    for a, b in zip(*finals, strict=True):  # the same structure, system id and noise: the same result
        assert np.allclose(a.positions, b.positions, rtol=0, atol=FLOAT64_ATOL)
        assert np.allclose(a.get_momenta(), b.get_momenta(), rtol=0, atol=FLOAT64_ATOL)
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=FLOAT64_ATOL)
    names = [sorted(p.name for p in (folder / "trajectories").iterdir()) for folder in (one, other)]
    assert names[0] == names[1]
    for name in names[0]:
        last = [ase.io.read(folder / "trajectories" / name, -1) for folder in (one, other)]
        assert np.allclose(last[0].positions, last[1].positions, rtol=0, atol=FLOAT64_ATOL)
        assert last[0].info["stage"] == last[1].info["stage"] == 2  # done
    logs = [(folder / "log.csv").read_text().splitlines() for folder in (one, other)]
    assert logs[0][0] == logs[1][0]  # the same columns
    systems = [{row.split(",")[1] for row in log[1:]} for log in logs]
    assert systems[0] == systems[1]
    summaries = [json.loads((folder / "summary.json").read_text()) for folder in (one, other)]
    assert {k: summaries[0][k] for k in SAME_IN_BOTH} == {k: summaries[1][k] for k in SAME_IN_BOTH}


def test_two_local_workers_write_the_one_process_files(tmp_path):
    source = _input(tmp_path, 6)
    assert main(["run", str(source), "-o", str(tmp_path / "one"), *OPTIONS]) == EXIT_OK
    command = ["run", str(source), "-o", str(tmp_path / "dask"), "--workers", "2", "--chunk-size", "2"]
    assert main([*command, *OPTIONS]) == EXIT_OK
    _assert_same_structures_and_files(tmp_path / "one", tmp_path / "dask")
    summary = json.loads((tmp_path / "dask" / "summary.json").read_text())
    assert summary["set_aside"][0]["index"] == 1 and summary["finished"] == 5


def test_a_running_cluster_by_its_address_and_a_resume_that_skips_what_is_done(tmp_path):
    source = _input(tmp_path, 5)
    assert main(["run", str(source), "-o", str(tmp_path / "one"), *OPTIONS]) == EXIT_OK
    out = tmp_path / "dask"
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        command = ["run", str(source), "-o", str(out), "--scheduler", cluster.scheduler_address]
        assert main([*command, "--chunk-size", "3", *OPTIONS]) == EXIT_OK
        _assert_same_structures_and_files(tmp_path / "one", out)
        progress = json.loads((out / "progress.json").read_text())
        assert sorted(progress["done"]) == [0, 2, 3, 4]
        before = (out / "final.extxyz").read_text()
        assert main(["resume", str(out), "-q"]) == EXIT_OK  # everything is done: nothing runs again
        assert json.loads((out / "summary.json").read_text())["finished"] == 4
        assert (out / "final.extxyz").read_text() == before


def _free_port() -> int:
    with socket.socket() as probe:  # bound, never listening: a connection there is refused
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unreachable_scheduler_exits_2_and_leaves_the_folder_as_it_was(tmp_path, capsys):
    source = _input(tmp_path, 3)
    out = tmp_path / "earlier"
    assert main(["run", str(source), "-o", str(out), *OPTIONS]) == EXIT_OK
    (out / "progress.json").write_text("{}")  # an earlier Dask run's record, which a start would clear
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    address = f"tcp://127.0.0.1:{_free_port()}"
    capsys.readouterr()
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        assert main(["run", str(source), "-o", str(out), "--scheduler", address, *OPTIONS]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--scheduler {address}: cannot connect" in err[0], err
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before


def test_without_dask_the_command_line_names_the_extra(tmp_path, monkeypatch, capsys):
    source = tmp_path / "input.extxyz"
    ase.io.write(source, chunk_helpers.structures(1))
    monkeypatch.setitem(sys.modules, "distributed", None)
    out = tmp_path / "out"
    assert main(["run", str(source), "-o", str(out), "--model", "emt", "--workers", "2"]) == EXIT_BAD_INPUT
    assert "pip install 'nvalchemi-ase[distributed]'" in capsys.readouterr().err
    assert not out.exists()
