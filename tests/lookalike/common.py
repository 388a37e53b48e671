"""Shared set-up of the look-alike tests: the same Lennard-Jones in ASE and in our batched model."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import LennardJones

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
TRAJECTORY_ATOL = 1e-10
"""Å (positions) and amu·Å/time (momenta) over a hundred-odd steps, the issue's figure."""


class CountingCalculator(BatchedCalculator):
    """A BatchedCalculator that counts its (host) ``calculate`` calls."""

    calls = 0

    def calculate(self, *args, **kwargs):
        CountingCalculator.calls += 1
        super().calculate(*args, **kwargs)


def ours(atoms: Atoms, calc: BatchedCalculator | None = None) -> Atoms:
    """A copy of ``atoms`` on our BatchedCalculator (CPU, float64)."""
    copy = atoms.copy()
    copy.calc = calc if calc is not None else BatchedCalculator(LennardJones(**ARGON), device="cpu")
    return copy


def theirs(atoms: Atoms) -> Atoms:
    """A copy of ``atoms`` on ASE's own LennardJones."""
    copy = atoms.copy()
    copy.calc = AseLennardJones(**ARGON)
    return copy


def with_velocities(systems: list[Atoms], scale: float = 0.01, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=scale, size=(len(atoms), 3)))
    return systems


def assert_same_state(mine: Atoms, reference: Atoms, label: str = "", momenta: bool = True) -> None:
    """Positions, momenta and energy equal to ~1e-10."""
    np.testing.assert_allclose(
        mine.positions, reference.positions, rtol=0, atol=TRAJECTORY_ATOL, err_msg=label
    )
    if momenta:
        np.testing.assert_allclose(
            mine.get_momenta(), reference.get_momenta(), rtol=0, atol=TRAJECTORY_ATOL, err_msg=label
        )
    np.testing.assert_allclose(
        mine.get_potential_energy(), reference.get_potential_energy(), rtol=1e-10, atol=1e-12, err_msg=label
    )
