"""Garbage collection around a CLI job: none while it sets up, and none of the set-up's objects after.

Importing torch, ASE and warp makes ~300,000 objects that live as long as the
process, and Python's collector, which counts allocations, runs full
collections over all of them as they pile up: in ``nvalchemi-ase demo`` four
during the imports (~20 to ~100 ms each) and one more in the run (~100 ms, while
a finished system's Atoms were copied), about a tenth of the whole command.
Set-up makes almost no garbage, so the collector is off until the run starts;
then what set-up made is frozen (:func:`gc.freeze`: later collections skip it)
and the collector is on again for the run's own objects.
"""

from __future__ import annotations

import gc
from typing import Any


class SetUpHeap:
    """``with SetUpHeap() as heap:`` set up, ``heap.settle()``, run; leaves the collector as it found it."""

    def __enter__(self) -> SetUpHeap:
        self._enabled = gc.isenabled()
        self._settled = False
        gc.disable()
        return self

    def settle(self) -> None:
        """The run starts: freeze what set-up made (the kernels' module loaded first), collect again."""
        from nvalchemi_ase.neighbors._backend import initialised_warp

        initialised_warp()
        gc.freeze()
        self._settled = True
        if self._enabled:
            gc.enable()

    def __exit__(self, *exc: Any) -> None:
        if self._settled:
            gc.unfreeze()  # a caller's process (a test, a notebook) collects them again later
        if self._enabled:
            gc.enable()


__all__ = ["SetUpHeap"]
