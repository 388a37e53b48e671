"""ASE's ``Optimizable`` protocol for the optimizer look-alikes, per system and for a list.

ASE 3.29's optimizers expose ``optimizable`` (``atoms.__ase_optimizable__()``):
flat coordinates, gradient and value, and the convergence test. A look-alike
optimizing one ``Atoms`` exposes exactly ASE's object; optimizing a list, it
exposes :class:`SystemsOptimizable`, all systems seen as one problem (the
coordinates and gradients of the systems one after another, the value the sum
of their energies), and ``optimizables``, one of ASE's per system. All read
the ``Atoms``, which the look-alike keeps current after ``run`` and at every
``irun`` yield.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from ase.utils.abc import Optimizable

__all__ = ["SystemsOptimizable", "optimizable_of"]


class SystemsOptimizable(Optimizable):
    """Several systems' ``Optimizable`` objects as one: concatenated coordinates and gradients.

    ``converged(gradient, fmax)`` is ASE's test on the concatenated gradient:
    every atom of every system below ``fmax``, i.e. every system converged.
    """

    def __init__(self, parts: Sequence[Optimizable]) -> None:
        self.parts = list(parts)
        sizes = [part.ndofs() for part in self.parts]
        self._bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    def ndofs(self) -> int:
        return int(self._bounds[-1])

    def get_x(self) -> np.ndarray:
        return np.concatenate([part.get_x() for part in self.parts])

    def set_x(self, x: np.ndarray) -> None:
        x = np.asarray(x).ravel()
        if x.size != self.ndofs():
            raise ValueError(f"{x.size} coordinates for {self.ndofs()} degrees of freedom")
        for part, start, end in zip(self.parts, self._bounds[:-1], self._bounds[1:], strict=True):
            part.set_x(x[start:end])

    def get_gradient(self) -> np.ndarray:
        return np.concatenate([np.asarray(part.get_gradient()).ravel() for part in self.parts])

    def get_value(self) -> float:
        return float(sum(part.get_value() for part in self.parts))

    def iterimages(self) -> Iterator[Any]:
        for part in self.parts:
            yield from part.iterimages()

    def __len__(self) -> int:
        return len(self.parts)

    def __getitem__(self, b: int) -> Optimizable:
        return self.parts[b]


def optimizable_of(atoms: Any) -> Optimizable:
    """What ASE's optimizer would use for one system: ``atoms.__ase_optimizable__()``."""
    return atoms.__ase_optimizable__()
