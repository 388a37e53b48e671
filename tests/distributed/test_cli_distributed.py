"""The command line on Dask: ``--workers N`` and ``--scheduler ADDRESS`` write the one-process files."""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, main, scaling
from tests.distributed import chunk_helpers
from tests.tolerances import FLOAT64_ATOL, FLOAT64_RTOL

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")

OPTIONS = ["--model", "emt", "--device", "cpu", "--steps", "6", "--relax-steps", "20", "-q"]
OPTIONS += ["--max-systems", "2", "--trajectory-interval", "3", "--log-interval", "3"]
SAME_IN_BOTH = ("systems", "finished", "relaxed", "unconverged", "set_aside", "interrupted")
"""Summary fields a distributed run shares with a one-process run (not timings or step counts)."""


DEADLINE_S = 600.0
"""Generous: the machine running the tests may be loaded many times over."""


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


def test_a_chunk_that_kills_its_workers_fails_in_one_line_and_the_rest_resumes(tmp_path, monkeypatch, capsys):
    source = _input(tmp_path, 5)  # chunks of 2: [0] (1 is set aside), [2, 3], [4]
    assert main(["run", str(source), "-o", str(tmp_path / "one"), *OPTIONS]) == EXIT_OK
    dying = functools.partial(chunk_helpers.cli_pipeline_but_die_with, system_id=3)
    monkeypatch.setattr(scaling, "worker_pipeline", dying)
    out = tmp_path / "dask"
    command = ["run", str(source), "-o", str(out), "--workers", "2", "--chunk-size", "2", *OPTIONS]
    capsys.readouterr()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):  # the first death fails it
        assert main(command) == EXIT_FAILED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "the chunk of structures 2-3 failed: every worker that ran it died" in err[0]
    assert f"continue with:  nvalchemi-ase resume {out}" in err[0]
    assert not {2, 3} & set(json.loads((out / "progress.json").read_text())["done"])
    monkeypatch.undo()
    parts = [out / ".progress.json.999.tmp", out / "trajectories" / ".system_00002.traj.999.tmp"]
    for part in parts:  # what a kill between a write and its rename leaves: resume clears it
        part.write_bytes(b"part")
    assert main(["resume", str(out), "-q"]) == EXIT_OK
    _assert_same_structures_and_files(tmp_path / "one", out)
    assert not any(part.exists() for part in parts)


def _trajectories(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Each trajectory's mtime and bytes (not the hidden part-written file a kill -9 can leave)."""
    return {
        p.name: (p.stat().st_mtime_ns, p.read_bytes())
        for p in (folder / "trajectories").iterdir()
        if not p.name.startswith(".")
    }


@pytest.mark.slow
def test_kill_9_of_a_two_worker_run_then_resume_skips_what_is_done_and_gives_the_uninterrupted_files(
    tmp_path,
):
    source = _input(tmp_path, 9)
    md = ["--steps", "150", "--chunk-size", "1"]  # 8 chunks of ~150 steps: the kill comes mid-run
    assert main(["run", str(source), "-o", str(tmp_path / "one"), *OPTIONS, *md]) == EXIT_OK
    dask_reference = tmp_path / "dask"
    assert main(["run", str(source), "-o", str(dask_reference), "--workers", "2", *OPTIONS, *md]) == EXIT_OK
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "nvalchemi_ase", "run", str(source), "-o", str(out), "--workers", "2"]
    # its own process group: kill -9 takes the run and its workers at once, as a batch queue does
    process = subprocess.Popen([*command, *OPTIONS, *md], start_new_session=True, stderr=subprocess.PIPE)
    progress = out / "progress.json"
    deadline = time.monotonic() + DEADLINE_S
    while not (progress.exists() and json.loads(progress.read_text())["done"]):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no chunk finished"
        time.sleep(0.02)
    time.sleep(float(np.random.default_rng(17).uniform(0.0, 0.3)))  # mid-chunk, mid-write or mid-record
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL and not (out / "summary.json").exists()
    done = json.loads(progress.read_text())["done"]
    assert 0 < len(done) < 8  # killed mid-run
    kept = {name: v for name, v in _trajectories(out).items() if int(name[7:12]) in done}
    assert main(["resume", str(out), "-q"]) == EXIT_OK
    resumed = _trajectories(out)
    assert not [p.name for p in (out / "trajectories").iterdir() if p.name.startswith(".")]  # parts cleared
    assert {name: resumed[name] for name in kept} == kept  # what was done is not run or written again
    finished = json.loads(progress.read_text())["done"]
    assert finished[: len(done)] == done and sorted(finished) == [0, *range(2, 9)]  # each once
    _assert_same_structures_and_files(tmp_path / "one", out)
    for name in resumed:  # no frame missing or twice: the frames of the uninterrupted Dask run
        got, expected = (ase.io.read(folder / "trajectories" / name, ":") for folder in (out, dask_reference))
        assert [a.info for a in got] == [a.info for a in expected], name
        for a, b in zip(got, expected, strict=True):
            assert np.allclose(a.positions, b.positions, rtol=0, atol=FLOAT64_ATOL)
    (keys, values), (expected_keys, expected_values) = (
        chunk_helpers.log_rows((folder / "log.csv").read_text()) for folder in (out, dask_reference)
    )
    assert keys == expected_keys  # no log row twice, none missing
    # a worker's warm model carries state (its neighbour lists) from the chunks it ran before:
    # sums in another order, temperatures of ~300 K that differ in their last bits
    assert np.allclose(values, expected_values, rtol=FLOAT64_RTOL, atol=FLOAT64_ATOL)


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


def test_idle_timeout_is_checked_before_anything_is_written(tmp_path, capsys):
    source = _input(tmp_path, 2)
    out = tmp_path / "out"
    for extra, message in (
        (["--workers", "1", "--idle-timeout", "-1"], "--idle-timeout must be 0 (wait for ever) or more"),
        (["--workers", "1", "--idle-timeout", "nan"], "--idle-timeout must be 0 (wait for ever) or more"),
        (["--idle-timeout", "60"], "--idle-timeout is for runs on Dask"),
    ):
        capsys.readouterr()
        assert main(["run", str(source), "-o", str(out), *extra, *OPTIONS]) == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err
        assert not out.exists()


def test_a_cluster_without_workers_fails_after_the_idle_timeout_and_says_how_to_resume(tmp_path, capsys):
    source = _input(tmp_path, 3)
    out = tmp_path / "dask"
    with distributed.LocalCluster(n_workers=0, processes=True, dashboard_address=":0") as cluster:
        command = ["run", str(source), "-o", str(out), "--scheduler", cluster.scheduler_address]
        started = time.monotonic()
        capsys.readouterr()
        assert main([*command, "--idle-timeout", "2", *OPTIONS]) == EXIT_FAILED
        assert time.monotonic() - started < 120  # not the default 300 s
    err = capsys.readouterr().err
    assert "no worker is left on the cluster" in err and f"nvalchemi-ase resume {out}" in err
    assert json.loads((out / "run.json").read_text())["idle_timeout"] == 2.0  # resume keeps it


def test_idle_timeout_zero_waits_for_ever_and_a_record_without_it_takes_the_default():
    assert scaling._idle_timeout(argparse.Namespace(idle_timeout=0.0)) is None
    assert scaling._idle_timeout(argparse.Namespace(idle_timeout=45.0)) == 45.0
    assert scaling._idle_timeout(argparse.Namespace()) == scaling.IDLE_TIMEOUT_S == 300.0
