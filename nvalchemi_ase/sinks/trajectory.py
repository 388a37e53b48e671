"""``TrajectorySink``: one ASE trajectory file per system, readable while the run goes on."""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import ase.io
import numpy as np
import torch
from ase.io.trajectory import Trajectory, TrajectoryWriter

from nvalchemi_ase.data import Batch
from nvalchemi_ase.sinks.base import DataSink, check_capacity

_SUFFIXES = {"traj": ".traj", "extxyz": ".extxyz"}


class TrajectorySink(DataSink):
    """Frames written as ASE files, ``{prefix}_{system_id:05d}.traj`` (or ``.extxyz``).

    Each write turns the selected systems into ``ase.Atoms`` (positions,
    momenta, masses, cell, pbc, tags, info, constraints, and energy, forces and
    stress as a ``SinglePointCalculator``) and appends one frame to the file of
    each system, named by its ``system_id``. The files open with ``ase gui``
    and ``ase.io.read(path, ":")``, also while the sink is still writing:
    ``.traj`` writers stay open and ASE flushes them after every frame;
    ``.extxyz`` files are opened, appended and closed at each write.

    Parameters
    ----------
    directory
        Where the files go; created (with parents) when missing.
    format
        ``"traj"`` (ASE's binary trajectory, exact float64) or ``"extxyz"``
        (text, 8 decimals).
    prefix
        Start of every file name.
    capacity
        Most frames written in all; ``None`` means no limit.
    append
        ``False`` (default): a file that exists before this sink first writes to
        it is started afresh, as ASE's ``Trajectory(path, "w")``. ``True``: new
        frames go after the frames already there (``read()`` still returns only
        this sink's frames).

    Raises
    ------
    ValueError
        Unknown ``format``, empty ``prefix``, bad ``capacity``.
    OSError
        ``directory`` cannot be created or written to.

    Notes
    -----
    ``len(sink)`` counts frames written. ``zero()`` (and so ``drain()``) deletes
    the files this sink wrote to. After ``close()`` a further write reopens the
    files and appends, so one sink can serve several runs.
    """

    def __init__(
        self,
        directory: str | Path,
        format: str = "traj",
        prefix: str = "system",
        capacity: int | None = None,
        append: bool = False,
    ) -> None:
        if format not in _SUFFIXES:
            raise ValueError(f"format must be one of {sorted(_SUFFIXES)}, got {format!r}")
        if not isinstance(prefix, str) or not prefix or "/" in prefix:
            raise ValueError(f"prefix must be a non-empty file-name part, got {prefix!r}")
        self._directory = _writable_directory(Path(directory))
        self._format = format
        self._prefix = prefix
        self._capacity = None if capacity is None else check_capacity(capacity)
        self._append = bool(append)
        self._writers: dict[int, TrajectoryWriter] = {}
        self._frames_in_file: dict[int, int] = {}
        """Frames each file holds (those before this sink included)."""
        self._order: list[tuple[int, int]] = []
        """(system_id, frame index in its file) of every frame written, in write order."""

    # ------------------------------------------------------------------ sizes
    @property
    def capacity(self) -> int | None:
        """Most frames written in all (``None``: no limit)."""
        return self._capacity

    def __len__(self) -> int:
        return len(self._order)

    @property
    def directory(self) -> Path:
        """The folder the files are in."""
        return self._directory

    @property
    def frames_in_files(self) -> dict[int, int]:
        """Frames each file this sink wrote to holds now, by system id (a checkpoint records them)."""
        return dict(self._frames_in_file)

    def path(self, system_id: int) -> Path:
        """The file of system ``system_id``."""
        return self._directory / f"{self._prefix}_{int(system_id):05d}{_SUFFIXES[self._format]}"

    def paths(self) -> list[Path]:
        """The files this sink wrote to, by system id."""
        return [self.path(system_id) for system_id in sorted(self._frames_in_file)]

    # ------------------------------------------------------------------ write
    def write(
        self, batch: Batch, mask: torch.Tensor | np.ndarray | None = None, *, step: int | None = None
    ) -> None:
        """Append one frame per selected system to its file.

        Parameters
        ----------
        batch
            The systems to write (any device).
        mask
            ``[B]`` bool selecting systems; ``None`` means all of them.
        step
            Stored as ``atoms.info["step"]`` of every frame of this write.
            A batch with a ``status`` field (the sub-stage of a fused run)
            also gives each frame ``atoms.info["stage"]``.
        """
        systems = self._prepare(batch, mask)
        if systems.size:
            self._store(batch, systems, step)

    def _store(self, batch: Batch, systems: np.ndarray, step: int | None = None) -> None:
        selected = batch.index_select(systems)
        images = selected.to_atoms()
        system_ids = selected.system_id.detach().cpu().numpy()
        stages = selected.status.tolist() if "status" in selected.field_names() else [None] * len(images)
        for system_id, atoms, stage in zip(system_ids.tolist(), images, stages, strict=True):
            if step is not None:
                atoms.info["step"] = int(step)
            if stage is not None:
                atoms.info["stage"] = int(stage)
            self._append_frame(int(system_id), atoms)

    def _append_frame(self, system_id: int, atoms: Any) -> None:
        path = self.path(system_id)
        if system_id not in self._frames_in_file:
            self._frames_in_file[system_id] = _frames_already_in(path, self._format) if self._append else 0
            if not self._append:
                path.unlink(missing_ok=True)
        if self._format == "traj":
            writer = self._writers.get(system_id)
            if writer is None:
                # properties=[]: only what each frame hands over below is written, and
                # ASE does not compare the frame with its calculator's copy for each of
                # its dozen property names (that comparison was most of a write)
                writer = self._writers[system_id] = Trajectory(str(path), "a", properties=[])
            results = getattr(atoms.calc, "results", {})
            writer.write(atoms, **results)  # ASE syncs and flushes the file after every frame
        else:
            ase.io.write(str(path), atoms, format="extxyz", append=True)
        self._order.append((system_id, self._frames_in_file[system_id]))
        self._frames_in_file[system_id] += 1

    # ------------------------------------------------------------------ read
    def read(self) -> Batch:
        """Every frame this sink wrote, read back from the files, in write order (CPU).

        ``system_id`` of the result names the file each frame came from;
        ``info["step"]`` is in the metadata when ``step=`` was given.
        """
        if not self._order:
            raise self._empty_error()
        frames = {
            system_id: ase.io.read(str(self.path(system_id)), ":", format=self._format)
            for system_id in self._frames_in_file
        }
        images = [frames[system_id][index] for system_id, index in self._order]
        result = Batch.from_atoms(images, device="cpu")
        result.system_id = torch.tensor([system_id for system_id, _ in self._order], dtype=torch.long)
        return result

    def zero(self) -> None:
        """Close the files, delete them, and forget every frame."""
        paths = self.paths()
        self.close()
        for path in paths:
            path.unlink(missing_ok=True)
        self._frames_in_file = {}
        self._order = []

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        """Close the open ``.traj`` writers (safe to call twice; a later write reopens)."""
        writers, self._writers = self._writers, {}
        for writer in writers.values():
            writer.close()

    def __enter__(self) -> TrajectorySink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if "_writers" in self.__dict__:  # the constructor may have failed before it
            self.close()


def _writable_directory(directory: Path) -> Path:
    """``directory``, created when missing, after checking that a file can be made in it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        raise OSError(f"TrajectorySink directory '{directory}' is not writable: {error}") from error
    return directory


def _frames_already_in(path: Path, file_format: str) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    return len(ase.io.read(str(path), ":", format=file_format))
