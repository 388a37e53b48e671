"""Trajectory files and optimizer logs as ASE writes them, one per system.

Naming, for a list of B > 1 systems given one path: a path containing ``{}``
(or any ``str.format`` field, e.g. ``{:03d}``) is formatted with the system's
index; any other path gets ``_<index>`` before its extension
(``md.traj`` → ``md_0.traj``, ``md_1.traj``, ...). One system keeps the path as
given. A list of paths or open writers (one per system) is used as is.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ase import Atoms

__all__ = ["OptimizerLog", "TrajectoryOutput", "system_paths"]


def system_paths(path: str | Path, count: int) -> list[Path]:
    """One path per system (see the module docstring for the rule)."""
    if count == 1:
        return [Path(path)]
    text = str(path)
    try:
        formatted = text.format(0) != text.format(1)
    except (IndexError, KeyError, ValueError):
        formatted = False  # braces that are not a format field: a literal name
    if formatted:
        return [Path(text.format(b)) for b in range(count)]
    stem = Path(text)
    return [stem.with_name(f"{stem.stem}_{b}{stem.suffix}") for b in range(count)]


def _per_system(target: Any, count: int, name: str) -> list[Any]:
    """Paths or open objects, one per system, from what the user passed."""
    if isinstance(target, list | tuple):
        if len(target) != count:
            raise ValueError(f"{name}: {len(target)} entries for {count} systems")
        return [t if hasattr(t, "write") else Path(t) for t in target]
    if hasattr(target, "write"):
        if count > 1:
            raise ValueError(
                f"{name}: one open writer cannot hold {count} systems; pass a path "
                "(one file per system) or a list of writers"
            )
        return [target]
    return list(system_paths(target, count))


class TrajectoryOutput:
    """ASE's trajectory writing (``BaseDynamics._traj_write_image``), one file per system.

    A path is deleted at construction unless ``append`` (rank 0 only), then
    opened in mode ``'a'`` for every frame, as ASE does, so an interrupted run
    leaves readable files. Open writers are used as is and never closed.
    """

    def __init__(self, trajectory: Any, count: int, append: bool, master: bool | None, comm: Any) -> None:
        self.master, self.comm = master, comm
        self.targets: list[Any] = [] if trajectory is None else _per_system(trajectory, count, "trajectory")
        for target in self.targets:
            if isinstance(target, Path) and comm.rank == 0 and not append:
                target.unlink(missing_ok=True)

    def __bool__(self) -> bool:
        return bool(self.targets)

    def _open(self, b: int) -> Any:
        from ase.io.trajectory import Trajectory

        target = self.targets[b]
        if hasattr(target, "write"):
            return _Borrowed(target)
        return Trajectory(target, master=self.master, mode="a", comm=self.comm)

    def write(self, b: int, atoms: Atoms, description: dict[str, Any]) -> None:
        """Append one frame of system ``b`` (the description is stored with the file's header)."""
        with self._open(b) as traj:
            traj.set_description(description)
            traj.write(atoms)

    def is_empty(self, b: int) -> bool:
        """Whether system ``b``'s trajectory holds no frame yet."""
        with self._open(b) as traj:
            return len(traj) == 0


class _Borrowed:
    """A user's open writer in a ``with`` block that does not close it."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __enter__(self) -> Any:
        return self.writer

    def __exit__(self, *exc_info: object) -> None:
        return None


class OptimizerLog:
    """ASE's optimizer log lines (``Optimizer.log``), for one system or many.

    ``None``: silent. ``'-'``: stdout. An object with ``write``: written to.
    A path: opened in append mode for every write, as ASE (3.29) does. With
    several systems a path becomes one file per system (see
    :func:`system_paths`), each exactly what ASE writes for that system alone;
    a shared stream gets one block per step, one line per system still
    running, the name tagged with the system index (``FIRE[2]:``).
    """

    def __init__(self, logfile: IO | str | Path | Sequence[Any] | None, count: int, comm: Any) -> None:
        self.comm = comm
        self.count = count
        self.shared = logfile is None or logfile == "-" or hasattr(logfile, "write")
        self.targets: list[Any] = [logfile] if self.shared else _per_system(logfile, count, "logfile")

    def __bool__(self) -> bool:
        return self.targets != [None]

    def write_rows(self, name: str, nsteps: int, rows: Sequence[tuple[int, float, float]]) -> None:
        """Log ``(system, energy, fmax)`` rows at step ``nsteps`` (headers at step 0)."""
        if not self or self.comm.rank != 0 or not rows:
            return
        clock = time.localtime()
        if self.shared:
            tagged = self.count > 1
            names = {b: f"{name}[{b}]" if tagged else name for b, _, _ in rows}
            text = _header(names[rows[0][0]]) if nsteps == 0 else ""
            text += "".join(_row(names[b], nsteps, clock, e, f) for b, e, f in rows)
            self._emit(self.targets[0], text)
            return
        for b, energy, fmax in rows:
            text = (_header(name) if nsteps == 0 else "") + _row(name, nsteps, clock, energy, fmax)
            self._emit(self.targets[b], text)

    @staticmethod
    def _emit(target: Any, text: str) -> None:
        if hasattr(target, "write"):
            target.write(text)
        elif target == "-":
            print(text, end="")
        else:
            with open(target, mode="a") as fd:
                fd.write(text)


def _header(name: str) -> str:
    return f"{' ' * len(name)}  {'Step':>4} {'Time':>8} {'Energy':>15}  {'fmax':>12}\n"


def _row(name: str, nsteps: int, clock: time.struct_time, energy: float, fmax: float) -> str:
    hms = f"{clock[3]:02d}:{clock[4]:02d}:{clock[5]:02d}"
    return f"{name}:  {nsteps:3d} {hms} {energy:15.6f} {fmax:15.6f}\n"
