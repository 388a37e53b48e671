"""MD logging: ASE's own ``MDLogger``, one per system.

``MDLogger`` is ASE's class itself (same columns, units and format). For a
list of systems :func:`attach_md_logger` gives each system its own logger:
a path becomes one file per system (named as the trajectories are), a stream
(``'-'`` or an open file) gets one header and then, at every logged step,
one line per system in system order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ase.md.logger import MDLogger

from nvalchemi_ase._lookalike.outputs import system_paths

__all__ = ["MDLogger", "MDLoggers", "attach_md_logger"]


class MDLoggers:
    """Several ``MDLogger`` called as one observer (one per system, in order)."""

    def __init__(self, loggers: list[MDLogger]) -> None:
        self.loggers = loggers

    def __call__(self) -> None:
        for logger in self.loggers:
            logger()


def attach_md_logger(dyn: Any, logfile: Any, loginterval: int) -> None:
    """Create the loggers for ``dyn``'s systems, register them for closing and attach them."""
    systems = dyn.systems.atoms
    if len(systems) == 1:
        logger = dyn.closelater(MDLogger(dyn=dyn, atoms=systems[0], logfile=logfile, comm=dyn.comm))
        dyn.attach(logger, loginterval)
        return
    if logfile == "-" or hasattr(logfile, "write"):
        targets = [logfile] * len(systems)
    elif isinstance(logfile, list | tuple):
        if len(logfile) != len(systems):
            raise ValueError(f"logfile: {len(logfile)} entries for {len(systems)} systems")
        targets = [t if hasattr(t, "write") else Path(t) for t in logfile]
    else:
        targets = list(system_paths(logfile, len(systems)))
    shared = targets[0] is targets[-1] and not isinstance(targets[0], Path)
    loggers = [
        dyn.closelater(
            MDLogger(dyn=dyn, atoms=atoms, logfile=target, header=not shared or b == 0, comm=dyn.comm)
        )
        for b, (atoms, target) in enumerate(zip(systems, targets, strict=True))
    ]
    dyn.attach(MDLoggers(loggers), loginterval)
