"""The command line's run record and checkpoints: ``run.json``, ``checkpoint.pt`` and ``resume``.

Every ``run`` writes its options to ``run.json`` in the output folder, so
``nvalchemi-ase resume OUTPUT_DIR`` can run it again with the same options.
With ``--checkpoint-every K`` a one-process run saves ``checkpoint.pt`` every K
fused steps and on SIGTERM (then exits 143); ``resume`` restores it, cuts the
log and the trajectories back to what they held at the save (frames the killed
run wrote after it go), and carries on. Together the outputs then equal those
of a run that was never stopped.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.io.trajectory import Trajectory

from nvalchemi_ase.cli.models import CommandLineError
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.checkpoint import (
    CheckpointError,
    CheckpointHook,
    read_checkpoint,
    restore_checkpoint,
)
from nvalchemi_ase.dynamics.fused import FusedStage
from nvalchemi_ase.dynamics.inflight import InflightSampler
from nvalchemi_ase.sinks import TrajectorySink
from nvalchemi_ase.sinks.files import remove_parts, replacing

RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"


def save_run_record(output: Path, options: dict[str, Any]) -> None:
    """Write ``run.json``: the run's command-line options, atomically."""
    with replacing(output / RUN_FILE) as temporary:
        temporary.write_text(json.dumps(options, indent=2, default=str))


def load_run_record(output: Path) -> dict[str, Any]:
    """The options ``run.json`` holds.

    Raises
    ------
    CommandLineError
        ``output`` has no ``run.json`` or an unreadable one.
    """
    path = output / RUN_FILE
    if not path.is_file():
        raise CommandLineError(f"{output} holds no {RUN_FILE}: it is not the output folder of a run")
    try:
        options = json.loads(path.read_text())
    except ValueError as error:
        raise CommandLineError(f"{path} is not a readable run record: {error}") from error
    if not isinstance(options, dict) or options.get("command") not in ("run", "demo"):
        raise CommandLineError(f"{path} is not the record of an nvalchemi-ase run")
    return options


class Checkpointing:
    """The checkpoint side of one command-line run (fresh, or resuming ``output``'s checkpoint).

    Parameters
    ----------
    output
        The run's output folder.
    every
        Fused steps between checkpoints.
    resume
        Continue from ``output/checkpoint.pt`` when there is one (a run killed
        before its first checkpoint starts afresh).

    Raises
    ------
    CommandLineError
        When resuming, a checkpoint that is corrupt, truncated or not ours.
    """

    def __init__(self, output: Path, every: int, resume: bool = False) -> None:
        self.output = output
        self.path = output / CHECKPOINT_FILE
        self.every = every
        self.saved: dict[str, Any] | None = None
        if resume and self.path.exists():
            try:
                self.saved = read_checkpoint(self.path)
            except CheckpointError as error:
                raise CommandLineError(str(error)) from error
        elif not resume:
            self.path.unlink(missing_ok=True)
        self.hook: CheckpointHook | None = None

    def make_hook(
        self,
        sampler: InflightSampler,
        finished: dict[int, Atoms],
        sink: TrajectorySink,
        log: Path,
        counters: dict[str, float],
    ) -> CheckpointHook:
        """The hook; each checkpoint also stores the input position, the finished structures,
        the sizes of the outputs and the run's counters (``counters``: atom steps, seconds)."""

        def extra() -> dict[str, Any]:
            return {
                "handed_out": sampler.handed_out,
                "finished": finished,
                "log_bytes": log.stat().st_size if log.exists() else 0,
                "frames": sink.frames_in_files,
                "counters": dict(counters),
            }

        self.hook = CheckpointHook(self.path, self.every, extra=extra)
        return self.hook

    def restore(
        self, pipeline: FusedStage, sampler: InflightSampler, finished: dict[int, Atoms], device: Any
    ) -> tuple[Batch | None, dict[str, float]]:
        """Restore pipeline, input stream and results, then cut the outputs back to the checkpoint.

        Returns the batch to continue with (``None`` when there is no checkpoint) and
        the counters saved with it.
        """
        if self.saved is None:
            return None, {}
        try:
            restored = restore_checkpoint(self.saved, pipeline, device=device)
        except CheckpointError as error:
            raise CommandLineError(f"{self.path}: {error}") from error
        extra = self.saved["extra"]
        trim_outputs(self.output, extra["log_bytes"], extra["frames"])
        sampler.skip(extra["handed_out"])
        finished.update(extra["finished"])
        return restored.batch, dict(extra.get("counters", {}))

    @contextlib.contextmanager
    def catch_sigterm(self) -> Iterator[None]:
        """SIGTERM inside the block: a checkpoint at the next step, then ``TerminatedAfterCheckpoint``."""
        assert self.hook is not None
        with self.hook.catch_sigterm():
            yield


def trim_outputs(output: Path, log_bytes: int, frames: dict[int, int]) -> None:
    """Cut ``log.csv`` to ``log_bytes`` and every trajectory to its recorded frames (others go), and
    remove the part-written files a kill left."""
    remove_parts(output)
    remove_parts(output / "trajectories")
    log = output / "log.csv"
    if log.exists():
        with open(log, "r+b") as stream:
            stream.truncate(log_bytes)
    for path in sorted((output / "trajectories").glob("*.traj")):
        system_id = int(path.stem.rpartition("_")[2])
        keep = frames.get(system_id, 0)
        if keep == 0:
            path.unlink()
            continue
        with Trajectory(str(path)) as reader:
            if len(reader) == keep:
                continue
            images = [reader[k] for k in range(keep)]
        with replacing(path) as temporary, Trajectory(str(temporary), "w") as writer:
            for atoms in images:
                writer.write(atoms)
