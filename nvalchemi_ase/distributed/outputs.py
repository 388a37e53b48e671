"""A distributed run's outputs, written on the client as chunks arrive, and resumable.

The folder looks like a one-process run's: ``trajectories/system_00000.traj``
(one per structure), ``log.csv``, and, at the end, ``final.extxyz``. Each chunk
is committed in three steps: its trajectories (each written whole, atomically:
writing one again is harmless), its log rows and final structures (appended to
``log.csv`` and ``finished.traj``), then ``progress.json``, rewritten atomically with
the structures done and the sizes of the appended files. A run killed at any
point resumes from ``progress.json``: appended data past the recorded sizes is
cut off, and the structures done are not run again.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.io.trajectory import Trajectory

from nvalchemi_ase.distributed.worker import ChunkResult
from nvalchemi_ase.sinks.files import remove_parts, replacing

__all__ = ["ChunkWriter"]

PROGRESS_FILE = "progress.json"
FINISHED_FILE = "finished.traj"


class ChunkWriter:
    """Writes each :class:`~nvalchemi_ase.distributed.ChunkResult` into ``output`` once.

    Parameters
    ----------
    output
        The run's output folder (created when missing).
    resume
        Continue the run recorded in ``output/progress.json`` (else start afresh).
    """

    def __init__(self, output: Path, resume: bool = False) -> None:
        self.output = output
        self.trajectories = output / "trajectories"
        self.trajectories.mkdir(parents=True, exist_ok=True)
        self.log = output / "log.csv"
        self.finished_path = output / FINISHED_FILE
        self.progress_path = output / PROGRESS_FILE
        self.done: list[int] = []
        self.final: dict[int, Atoms] = {}
        self.set_aside: dict[int, str] = {}
        """Structures a worker's hook set aside, with the reason, by input index."""
        self.fused_steps = 0
        self.atom_steps = 0
        if resume and self.progress_path.exists():
            self._resume()
        else:
            for path in (self.log, self.finished_path, self.progress_path):
                path.unlink(missing_ok=True)
            self._save_progress()  # a run that fails before its first chunk resumes from nothing done

    def _resume(self) -> None:
        remove_parts(self.output)  # what a kill left half written
        remove_parts(self.trajectories)
        progress = json.loads(self.progress_path.read_text())
        self.done = list(progress["done"])
        self.fused_steps, self.atom_steps = progress["fused_steps"], progress["atom_steps"]
        self.set_aside = {int(k): v for k, v in progress.get("set_aside", {}).items()}
        if self.log.exists():
            with open(self.log, "r+b") as stream:
                stream.truncate(progress["log_bytes"])
        images = self._finished_images(progress["finished_frames"])
        if images:
            _rewrite(self.finished_path, images)  # frames appended after the last commit go
        else:
            self.finished_path.unlink(missing_ok=True)
        for atoms in images:
            self.final[atoms.info["system_id"]] = atoms

    def _finished_images(self, count: int) -> list[Atoms]:
        if count == 0:
            return []
        with Trajectory(str(self.finished_path)) as reader:
            return [reader[k] for k in range(count)]

    def write(self, result: ChunkResult) -> None:
        """Commit one chunk's outputs (trajectories, log rows, final structures, then progress)."""
        for index, frames in result.frames.items():
            _rewrite(self.trajectories / f"system_{index:05d}.traj", frames)
        if result.log_rows:
            columns = tuple(result.log_rows[0])  # the worker's LoggingHook columns
            new_log = not self.log.exists() or self.log.stat().st_size == 0
            with open(self.log, "a", encoding="utf-8", newline="") as stream:
                writer = csv.writer(stream, lineterminator="\n")
                if new_log:
                    writer.writerow(columns)
                writer.writerows([[row[c] for c in columns] for row in result.log_rows])
        with Trajectory(str(self.finished_path), "a") as trajectory:
            for atoms in result.final:
                trajectory.write(atoms)
        for atoms in result.final:
            self.final[atoms.info["system_id"]] = atoms
        self.set_aside.update(result.set_aside)
        self.done += result.indices
        self.fused_steps += result.fused_steps
        self.atom_steps += result.atom_steps
        self._save_progress()

    def _save_progress(self) -> None:
        progress: dict[str, Any] = {
            "done": self.done,
            "log_bytes": self.log.stat().st_size if self.log.exists() else 0,
            "finished_frames": len(self.final),
            "fused_steps": self.fused_steps,
            "atom_steps": self.atom_steps,
            "set_aside": self.set_aside,
        }
        with replacing(self.progress_path) as temporary:
            temporary.write_text(json.dumps(progress))

    def results(self) -> list[Atoms]:
        """The final structures so far, in input order."""
        return [self.final[k] for k in sorted(self.final)]


def _rewrite(path: Path, images: list[Atoms]) -> None:
    """``images`` as the whole of ``path``, written beside it and renamed over it."""
    with replacing(path) as temporary, Trajectory(str(temporary), "w") as trajectory:
        for atoms in images:
            trajectory.write(atoms)
