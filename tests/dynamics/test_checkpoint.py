"""Checkpoints: a restored run continues bit for bit; files are atomic; bad checkpoints fail clearly."""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch
from ase.build import bulk

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook, FusedStage, InflightSampler, NVTLangevin
from nvalchemi_ase.dynamics.checkpoint import (
    EXIT_TERMINATED,
    CheckpointError,
    CheckpointHook,
    TerminatedAfterCheckpoint,
    read_checkpoint,
    restore_checkpoint,
    save_checkpoint,
)
from nvalchemi_ase.dynamics.hooks import LoggingHook
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.models import EMT

STATE_FIELDS = ("positions", "velocities", "forces", "energy", "status")


def _structures(count: int = 3) -> list:
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1 + k % 2, 2, 1))
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def _pipeline(hooks: list | None = None) -> FusedStage:
    model = EMT()
    relax = FIRE(model, n_steps=8, convergence_hook=ConvergenceHook.from_fmax(0.05))
    md = NVTLangevin(
        model, dt=2.0, temperature=300.0, friction=0.02, seed=5, n_steps=12,
        initial_temperature=300.0, velocity_seed=7,
    )  # fmt: skip
    return FusedStage([relax, md], hooks=hooks)


def _assert_same_bits(first: Batch, second: Batch) -> None:
    for name in STATE_FIELDS:
        assert torch.equal(getattr(first, name), getattr(second, name)), name


def test_restored_fused_run_continues_bit_for_bit(tmp_path):
    reference = _pipeline().run(Batch.from_atoms(_structures(), device="cpu"), n_steps=20)
    interrupted = _pipeline()
    interrupted.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=9)  # inside the relaxation
    save_checkpoint(tmp_path / "run.pt", interrupted)
    resumed = _pipeline()
    restored = restore_checkpoint(tmp_path / "run.pt", resumed)
    assert restored.step_count == resumed.step_count == 9
    resumed.run(restored.batch, n_steps=11)
    _assert_same_bits(reference, restored.batch)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed, not left behind


def test_checkpoint_hook_saves_every_k_steps_and_resumes(tmp_path):
    path = tmp_path / "every.pt"
    hook = CheckpointHook(path, every=4)
    engine = _pipeline([hook])
    reference = engine.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=14)
    assert hook.saves == 3  # steps 4, 8 and 12
    assert read_checkpoint(path)["step_count"] == 12
    resumed = _pipeline([CheckpointHook(path, every=4)])
    restored = restore_checkpoint(path, resumed)
    resumed.run(restored.batch, n_steps=2)
    _assert_same_bits(reference, restored.batch)


class _SendSigterm:
    """Sends this process SIGTERM after a given step (what a batch queue does)."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self, at_step: int) -> None:
        self.at_step = at_step

    def __call__(self, ctx, stage) -> None:
        if ctx.step_count == self.at_step:
            os.kill(os.getpid(), signal.SIGTERM)


def test_sigterm_writes_a_checkpoint_then_exits_143(tmp_path):
    path = tmp_path / "term.pt"
    hook = CheckpointHook(path, every=1000)
    engine = _pipeline([hook, _SendSigterm(at_step=5)])
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TerminatedAfterCheckpoint) as stopped, hook.catch_sigterm():
        engine.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=20)
    assert stopped.value.code == EXIT_TERMINATED and stopped.value.path == path
    assert signal.getsignal(signal.SIGTERM) is before
    assert read_checkpoint(path)["step_count"] == 6  # saved at the boundary after the signal
    resumed = _pipeline([CheckpointHook(path, every=1000), _SendSigterm(at_step=-1)])
    restored = restore_checkpoint(path, resumed)
    resumed.run(restored.batch, n_steps=14)
    reference = _pipeline().run(Batch.from_atoms(_structures(), device="cpu"), n_steps=20)
    _assert_same_bits(reference, restored.batch)


def test_catch_sigterm_in_another_thread_installs_nothing_and_the_run_goes_on(tmp_path):
    path = tmp_path / "thread.pt"
    hook = CheckpointHook(path, every=4)
    engine = _pipeline([hook])
    before = signal.getsignal(signal.SIGTERM)
    seen: dict = {}

    def in_a_thread() -> None:  # signal.signal would raise ValueError here
        with hook.catch_sigterm():
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            seen["batch"] = engine.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=9)

    thread = threading.Thread(target=in_a_thread)
    thread.start()
    thread.join(timeout=300)
    assert not thread.is_alive() and "batch" in seen
    assert seen["handler"] is before and signal.getsignal(signal.SIGTERM) is before
    assert read_checkpoint(path)["step_count"] == 8  # checkpoints every k steps still happen
    reference = _pipeline().run(Batch.from_atoms(_structures(), device="cpu"), n_steps=9)
    _assert_same_bits(reference, seen["batch"])


def test_inflight_run_resumes_with_its_input_position_and_results(tmp_path):
    structures = _structures(5)

    def sampler() -> InflightSampler:
        return InflightSampler(structures, max_systems=2, device="cpu")

    reference = _pipeline().run_inflight(sampler())
    path = tmp_path / "inflight.pt"
    first_sampler, finished = sampler(), {}
    hook = CheckpointHook(
        path, every=10, extra=lambda: {"handed_out": first_sampler.handed_out, "finished": dict(finished)}
    )
    _pipeline([hook]).run_inflight(first_sampler, n_steps=25, results=finished)
    saved = read_checkpoint(path)
    assert 0 < saved["extra"]["handed_out"] <= len(structures)
    resumed, second_sampler = _pipeline([CheckpointHook(path, every=10)]), sampler()
    restored = restore_checkpoint(saved, resumed)
    second_sampler.skip(restored.extra["handed_out"])
    results = resumed.run_inflight(second_sampler, batch=restored.batch, results=restored.extra["finished"])
    assert [a.info["system_id"] for a in results] == list(range(len(structures)))
    for expected, got in zip(reference, results, strict=True):
        assert (expected.positions == got.positions).all()
        assert (expected.get_velocities() == got.get_velocities()).all()


def test_logging_hook_appends_after_resume(tmp_path):
    log = tmp_path / "log.csv"
    path = tmp_path / "log.pt"
    reference_log = tmp_path / "reference.csv"
    _pipeline([LoggingHook(frequency=3, log_path=str(reference_log))]).run(
        Batch.from_atoms(_structures(), device="cpu"), n_steps=12
    )
    engine = _pipeline([LoggingHook(frequency=3, log_path=str(log))])
    engine.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=6)
    save_checkpoint(path, engine)
    resumed = _pipeline([LoggingHook(frequency=3, log_path=str(log))])
    with resumed:
        restored = restore_checkpoint(path, resumed)
        resumed.run(restored.batch, n_steps=6)
    assert log.read_text() == reference_log.read_text()


def test_corrupt_and_foreign_checkpoints_are_named(tmp_path):
    engine = _pipeline()
    engine.run(Batch.from_atoms(_structures(), device="cpu"), n_steps=2)
    path = save_checkpoint(tmp_path / "good.pt", engine)
    torn = tmp_path / "torn.pt"
    torn.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        restore_checkpoint(torn, _pipeline())
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointError, match="not an nvalchemi-ase checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_checkpoint(tmp_path / "missing.pt")
    other = FusedStage([FIRE(EMT(), n_steps=8), FIRE(EMT(), n_steps=8)])
    with pytest.raises(CheckpointError, match=r"another pipeline.*NVTLangevin.*FIRE"):
        restore_checkpoint(path, other)


def test_checkpoint_hook_checks_its_place_and_interval():
    with pytest.raises(ValueError, match="every"):
        CheckpointHook("x.pt", every=0)
    late = _SendSigterm(at_step=-1)
    late.stage = DynamicsStage.BEFORE_STEP
    with pytest.raises(ValueError, match="before every other BEFORE_STEP hook"):
        _pipeline([late, CheckpointHook("x.pt", every=2)])
