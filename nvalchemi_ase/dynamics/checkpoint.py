"""Checkpoints: a run's whole state in one file, written atomically, and resumed bit for bit.

A checkpoint holds the batch (every field, the host metadata), the engine's
state (a ``FusedStage``'s and each sub-stage's: per-system state, step
counters, convergence flags, random generators) and its hooks' state (see
:mod:`nvalchemi_ase.dynamics.state`), plus what the caller adds as ``extra``
(an inflight run adds where its input stream stands and the structures
already finished). It is written to a temporary file beside the target,
synced, then renamed over it: a reader sees the old checkpoint or the new one,
never a torn file.

:class:`CheckpointHook` saves one every ``every`` steps and, inside
:meth:`CheckpointHook.catch_sigterm`, on SIGTERM (what batch queues send
before they kill a job): it saves at the next step boundary, then raises
:class:`TerminatedAfterCheckpoint` (a ``SystemExit`` with code 143).
:func:`restore_checkpoint` puts a saved state into an engine built the same way,
so its next step is the one the saved run would have taken: the same bits.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.state import batch_from_state, batch_state, engine_state, load_engine_state
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.sinks.files import replacing

__all__ = [
    "CheckpointError",
    "CheckpointHook",
    "Restored",
    "TerminatedAfterCheckpoint",
    "read_checkpoint",
    "restore_checkpoint",
    "save_checkpoint",
]

FORMAT = "nvalchemi-ase checkpoint"
VERSION = 1
EXIT_TERMINATED = 143
"""The exit code after SIGTERM (128 + 15), as a shell reports a process it terminated."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, foreign, or made by another pipeline."""


class TerminatedAfterCheckpoint(SystemExit):
    """SIGTERM arrived; a checkpoint was written to ``path``. Exit code 143 when not caught."""

    def __init__(self, path: Path) -> None:
        super().__init__(EXIT_TERMINATED)
        self.path = path


@dataclass
class Restored:
    """What :func:`restore_checkpoint` gives back."""

    batch: Batch
    """The saved batch, bound to the engine (continue with ``engine.run(restored.batch, ...)``)."""
    extra: dict[str, Any]
    """The caller's ``extra`` of :func:`save_checkpoint`."""
    step_count: int
    """The engine's step counter at the save."""


def save_checkpoint(
    path: str | os.PathLike[str], engine: Any, batch: Batch | None = None, extra: dict[str, Any] | None = None
) -> Path:
    """Write ``engine``'s whole state and ``batch`` (default: the engine's) to ``path``, atomically.

    Save between steps (or from a hook at ``BEFORE_STEP``, as :class:`CheckpointHook` does):
    that is the state a step starts from.
    """
    batch = engine.batch if batch is None else batch
    if batch is None:
        raise ValueError("nothing to checkpoint: the engine has no batch yet")
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "step_count": engine.step_count,
        "batch": batch_state(batch),
        "engine": engine_state(engine),
        "extra": dict(extra or {}),
    }
    return write_atomically(Path(path), payload)


def write_atomically(path: Path, payload: Any) -> Path:
    """``torch.save`` to a temporary file beside ``path``, synced, then renamed over ``path``."""
    with replacing(path) as temporary, open(temporary, "wb") as stream:
        torch.save(payload, stream)
    return path


def read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The checkpoint's contents, checked to be one of ours.

    Raises
    ------
    CheckpointError
        No file, a file that does not load (corrupt, truncated), or a file that
        is not an nvalchemi-ase checkpoint of a version this package reads.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated?): {error}"
        ) from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an nvalchemi-ase checkpoint")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path} is a checkpoint of format version {payload.get('version')}; this package reads {VERSION}"
        )
    return payload


def restore_checkpoint(
    source: str | os.PathLike[str] | dict[str, Any], engine: Any, device: torch.device | str | None = None
) -> Restored:
    """Load a checkpoint into ``engine`` (built with the same classes, parameters and hooks).

    The saved batch is rebuilt on ``device`` (default: the one it was saved from), bound to the engine
    (models moved there, state fields checked), then the engine's and hooks'
    saved state is written back. Continue with ``engine.run(restored.batch, n_steps)``
    or, inflight, :func:`~nvalchemi_ase.dynamics.inflight.run_inflight` with ``batch=``.

    Raises
    ------
    CheckpointError
        As :func:`read_checkpoint`, or when the engine does not match the saved one
        (other classes, sub-stages or hooks).
    """
    payload = source if isinstance(source, dict) else read_checkpoint(source)
    where = "the checkpoint" if isinstance(source, dict) else str(source)
    batch = batch_from_state(payload["batch"], payload["batch"]["device"] if device is None else device)
    engine.prime(batch)  # bind: models on the device, state fields, entry (forces are in the batch)
    try:
        load_engine_state(engine, payload["engine"], {payload["batch"]["device"]: batch.device})
    except ValueError as error:
        raise CheckpointError(f"{where} was written by another pipeline: {error}") from error
    for name, value in payload["batch"]["fields"].items():  # binding may have drawn velocities
        setattr(batch, name, value.to(batch.device))
    return Restored(batch=batch, extra=payload["extra"], step_count=engine.step_count)


class CheckpointHook:
    """Save a checkpoint every ``every`` steps (and on SIGTERM, inside :meth:`catch_sigterm`).

    It fires at ``BEFORE_STEP``, where the state is the one the step starts
    from, so register it before any other ``BEFORE_STEP`` hook (on a
    ``FusedStage``, among the fused stage's own hooks).

    Parameters
    ----------
    path
        The checkpoint file (replaced atomically at each save).
    every
        Steps between checkpoints (``step_count % every == 0``; not at step 0).
    extra
        Called at each save; its dict is stored as the checkpoint's ``extra``.

    Raises
    ------
    ValueError
        ``every`` is not an integer ≥ 1; at registration, when another
        ``BEFORE_STEP`` hook is already registered.
    """

    stage = DynamicsStage.BEFORE_STEP
    frequency = 1

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int,
        extra: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1, got {every!r}")
        self.path = Path(path)
        self.every = every
        self.extra = extra
        self.saves = 0
        self._terminate = False
        self._saved_at: int | None = None

    def on_register(self, engine: Any) -> None:
        if engine.hooks_at(DynamicsStage.BEFORE_STEP):
            raise ValueError("register CheckpointHook before every other BEFORE_STEP hook of its engine")

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        step = ctx.step_count
        due = step % self.every == 0 and step > 0 and step != self._saved_at
        if due or self._terminate:
            self.save(ctx.dynamics, ctx.batch)
        if self._terminate:
            raise TerminatedAfterCheckpoint(self.path)

    def save(self, engine: Any, batch: Batch) -> Path:
        """Write the checkpoint now."""
        self._saved_at = engine.step_count
        extra = self.extra() if self.extra is not None else None
        save_checkpoint(self.path, engine, batch, extra)
        self.saves += 1
        return self.path

    def state_dict(self) -> dict[str, Any]:
        """Only the step of the save (a resumed run does not save the same state again)."""
        return {"saved_at": self._saved_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._saved_at = state.get("saved_at")

    def request_stop(self) -> None:
        """Save at the next step boundary, then raise :class:`TerminatedAfterCheckpoint`."""
        self._terminate = True

    @contextlib.contextmanager
    def catch_sigterm(self) -> Iterator[CheckpointHook]:
        """Within the block, SIGTERM calls :meth:`request_stop` (the handler is restored after).

        Python delivers signals to the main thread only, and only it may install a
        handler: from another thread the block installs nothing and the run goes on
        as without it (that thread's owner can still call :meth:`request_stop`).
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: self.request_stop())
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def __repr__(self) -> str:
        return f"CheckpointHook(path={str(self.path)!r}, every={self.every})"
