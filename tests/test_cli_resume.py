"""``--checkpoint-every`` and ``resume``: a run killed at any moment resumes to the same files, bitwise."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_TERMINATED, main
from nvalchemi_ase.dynamics.checkpoint import read_checkpoint

JOB = ["--model", "emt", "--device", "cpu", "--max-systems", "2", "--relax-steps", "10", "-q"]
OUTPUTS = ["--log-interval", "2", "--trajectory-interval", "3"]
DEADLINE_S = 600.0
"""Generous: the machine running the tests may be loaded many times over."""
TIMINGS = ("seconds", "atom_steps_per_second")
"""The summary's fields that differ between any two runs."""


def _input_file(tmp_path: Path, count: int = 4, crowded: int | None = None) -> Path:
    """``count`` rattled copper cells; structure ``crowded`` has two overlapping atoms (set aside)."""
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1 + k % 2, 2, 1))
        atoms.rattle(0.05, seed=k)
        if k == crowded:
            atoms.positions[1] = atoms.positions[0] + [0.1, 0.0, 0.0]
        frames.append(atoms)
    path = tmp_path / "input.extxyz"
    ase.io.write(path, frames)
    return path


def _start(*arguments: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "nvalchemi_ase", *arguments]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _running_until(condition, process: subprocess.Popen) -> bool:
    """Wait for ``condition``; False when the process ended first (a fast machine: nothing to kill)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if process.poll() is not None:
            return False
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run stalled: {process.communicate()}")
        time.sleep(0.02)
    return True


def _checkpoint_after(path: Path, step: int) -> bool:
    if not path.exists():
        return False
    try:
        return read_checkpoint(path)["step_count"] > step
    except ValueError:  # replaced while being read: look again
        return False


def _assert_same_outputs(expected: Path, got: Path) -> None:
    finals = ase.io.read(expected / "final.extxyz", ":"), ase.io.read(got / "final.extxyz", ":")
    assert len(finals[0]) == len(finals[1])
    for a, b in zip(*finals, strict=True):
        assert a.info == b.info
        assert np.array_equal(a.positions, b.positions) and np.array_equal(a.get_momenta(), b.get_momenta())
    names = sorted(p.name for p in (expected / "trajectories").iterdir())
    assert names == sorted(p.name for p in (got / "trajectories").iterdir())
    for name in names:
        first = ase.io.read(expected / "trajectories" / name, ":")
        second = ase.io.read(got / "trajectories" / name, ":")
        assert [a.info for a in first] == [b.info for b in second], name  # no frame missing or twice
        for a, b in zip(first, second, strict=True):
            assert np.array_equal(a.positions, b.positions)
            assert np.array_equal(a.get_momenta(), b.get_momenta())
            assert a.get_potential_energy() == b.get_potential_energy()
    assert (expected / "log.csv").read_text() == (got / "log.csv").read_text()
    summaries = [json.loads((path / "summary.json").read_text()) for path in (expected, got)]
    for summary, path in zip(summaries, (expected, got), strict=True):
        for name in (*TIMINGS, "outputs"):
            del summary[name]
        assert summary["settings"].pop("output") == str(path)
    assert summaries[0] == summaries[1]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_gives_the_uninterrupted_files(tmp_path):
    source = _input_file(tmp_path, count=5, crowded=1)
    md = ["--steps", "40", "--checkpoint-every", "3", "--max-systems", "1"]  # one at a time: ~200 steps
    reference = tmp_path / "reference"
    assert main(["run", str(source), "-o", str(reference), *JOB, *md, *OUTPUTS]) == EXIT_OK
    rng = np.random.default_rng(17)
    out = tmp_path / "killed"
    checkpoint = out / "checkpoint.pt"
    process = _start("run", str(source), "-o", str(out), *JOB, *md, *OUTPUTS)
    assert _running_until(checkpoint.exists, process), process.communicate()
    time.sleep(float(rng.uniform(0.0, 0.5)))  # a random moment: mid-step, mid-write, mid-checkpoint
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL  # killed before its end (~200 steps, saved every 3)
    saved_step = read_checkpoint(checkpoint)["step_count"]
    process = _start("resume", str(out), "-q")
    if _running_until(functools.partial(_checkpoint_after, checkpoint, saved_step), process):
        time.sleep(float(rng.uniform(0.0, 0.5)))  # killed again, during its resumption (unless it ended)
        process.send_signal(signal.SIGKILL)
    process.communicate()
    assert main(["resume", str(out), "-q"]) == EXIT_OK
    _assert_same_outputs(reference, out)
    assert sorted(p.name for p in (out / "trajectories").iterdir())[:2] == [
        "system_00000.traj",
        "system_00002.traj",  # named by input index: structure 1 was set aside
    ]


def test_a_run_stopped_by_a_test_hook_resumes_to_the_uninterrupted_files(tmp_path, monkeypatch):
    """The same as kill -9, in process and at a fixed step (fast; the kill -9 test is ``slow``)."""
    from nvalchemi_ase.cli import pipeline as pipeline_module

    source = _input_file(tmp_path, count=3, crowded=1)
    options = [*JOB, "--steps", "6", "--checkpoint-every", "4", *OUTPUTS]
    reference = tmp_path / "reference"
    assert main(["run", str(source), "-o", str(reference), *options]) == EXIT_OK
    original = pipeline_module.FusedStage.step
    calls = {"n": 0}

    class Killed(BaseException):
        """Stands for kill -9: nothing is written after it."""

    def dying(self, batch=None):
        calls["n"] += 1
        if calls["n"] == 11:  # after the checkpoint at step 8, before the next
            raise Killed
        return original(self, batch)

    out = tmp_path / "killed"
    monkeypatch.setattr(pipeline_module.FusedStage, "step", dying)
    with pytest.raises(Killed):
        main(["run", str(source), "-o", str(out), *options])
    monkeypatch.setattr(pipeline_module.FusedStage, "step", original)
    assert read_checkpoint(out / "checkpoint.pt")["step_count"] == 8
    # what a kill between a write and its rename leaves: resume clears it (the file listings must match)
    (out / "trajectories" / ".system_00000.traj.999.tmp").write_bytes(b"part")
    (out / ".run.json.999.tmp").write_text("{")
    assert main(["resume", str(out), "-q"]) == EXIT_OK
    _assert_same_outputs(reference, out)
    assert not (out / ".run.json.999.tmp").exists()


def test_sigterm_writes_a_checkpoint_and_exits_143(tmp_path):
    source = _input_file(tmp_path)
    out = tmp_path / "terminated"
    process = _start(
        "run", str(source), "-o", str(out), *JOB, "--steps", "100000", "--checkpoint-every", "100000"
    )
    log = out / "log.csv"
    if not _running_until(lambda: log.exists() and log.read_text().count("\n") > 3, process):
        pytest.fail(f"the run ended before it was terminated: {process.communicate()}")
    assert not (out / "checkpoint.pt").exists()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == EXIT_TERMINATED
    assert f"nvalchemi-ase resume {out}" in stderr
    saved = read_checkpoint(out / "checkpoint.pt")
    assert saved["step_count"] > 0 and saved["extra"]["log_bytes"] == log.stat().st_size


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_resume_names_a_corrupt_or_foreign_checkpoint_and_a_folder_that_is_no_run(tmp_path, capsys):
    source = _input_file(tmp_path, count=1)
    out = tmp_path / "run"
    options = ["--steps", "4", "--checkpoint-every", "2", *OUTPUTS]
    assert main(["run", str(source), "-o", str(out), *JOB, *options]) == EXIT_OK
    checkpoint = out / "checkpoint.pt"
    whole = checkpoint.read_bytes()
    checkpoint.write_bytes(whole[:100])
    capsys.readouterr()
    assert main(["resume", str(out)]) == EXIT_BAD_INPUT
    assert "not a readable checkpoint" in _one_error_line(capsys)
    import torch

    torch.save({"weights": [1.0, 2.0]}, checkpoint)
    assert main(["resume", str(out)]) == EXIT_BAD_INPUT
    assert "is not an nvalchemi-ase checkpoint" in _one_error_line(capsys)
    checkpoint.write_bytes(whole)
    record = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**record, "no_md": True, "md": False}))
    assert main(["resume", str(out)]) == EXIT_BAD_INPUT  # a checkpoint of another pipeline
    assert "another pipeline" in _one_error_line(capsys)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["resume", str(empty)]) == EXIT_BAD_INPUT
    assert "run.json" in _one_error_line(capsys)


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (["--checkpoint-every", "-1"], "--checkpoint-every must be at least 1, got -1"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
        (["--chunk-size", "0"], "--chunk-size must be at least 1, got 0"),
        (["--workers", "2", "--checkpoint-every", "5"], "--checkpoint-every is for one-process runs"),
    ],
)
def test_bad_scale_out_options_exit_2_with_one_line_before_anything_is_written(
    tmp_path, capsys, option, message
):
    out = tmp_path / "out"
    assert main(["run", str(_input_file(tmp_path, count=1)), "-o", str(out), *JOB, *option]) == EXIT_BAD_INPUT
    assert message in _one_error_line(capsys)
    assert not out.exists()
