"""``Andersen``: ``ase.md.andersen.Andersen`` over the batched Andersen engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms, FixBondLengths, FixCartesian, FixCom, Hookean

from nvalchemi_ase._lookalike.random import ase_noise
from nvalchemi_ase.dynamics import Andersen as AndersenEngine
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.units import ev_to_kelvin, internal_to_fs, kelvin_to_ev

__all__ = ["Andersen"]


HELD = (FixAtoms, FixCartesian)
"""With ``fixcm``: constraints that hold positions, applied around the centre-of-mass restore as ASE does."""
SHIFT_FREE = (FixCom, Hookean, FixBondLengths)
"""With ``fixcm``: constraints a rigid shift leaves alone (order with the restore does not matter)."""


def _check_fixcm_constraints(systems: Sequence[Atoms]) -> None:
    """``fixcm=True``: each system's constraints all in ``HELD`` or all in ``SHIFT_FREE``."""
    for index, atoms in enumerate(systems):
        kinds = {type(constraint) for constraint in atoms.constraints}
        if kinds <= set(HELD) or kinds <= set(SHIFT_FREE):
            continue
        names = ", ".join(sorted(kind.__name__ for kind in kinds))
        raise NotImplementedError(
            f"atoms[{index}] has constraints {names}: Andersen(fixcm=True) supports FixAtoms and "
            "FixCartesian, or FixCom, Hookean and FixBondLength(s) (ASE applies the others before and "
            "after its centre-of-mass restore; not reproduced here); use fixcm=False"
        )


class Andersen(MolecularDynamics):
    """Andersen thermostat (constant N, V, T), ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Target temperature in K (one per system allowed for a list).
    andersen_prob
        Probability per step that a velocity component is redrawn.
    fixcm
        Keep the centre of mass in place and at rest (ASE's default True).
    rng
        ``numpy.random`` by default; one generator per system (each system then
        reproduces ASE alone); one shared generator draws, each step, every
        system's centre-of-mass uniforms, then every system's collision
        uniforms; or a ``torch.Generator`` on the device.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    Constraints are supported with ``fixcm=False``. With ``fixcm=True`` (ASE
    applies the constraints to the drift, restores the centre of mass, and
    applies them again), each system may carry ``FixAtoms`` and
    ``FixCartesian`` (the held atoms stay put, so the centre of mass moves a
    little, as in ASE), or ``FixCom``, ``Hookean`` and ``FixBondLength(s)``;
    other constraints and mixtures (``FixedPlane``, ``Hookean`` with
    ``FixAtoms``, ...) raise NotImplementedError (ASE applies them before and
    after the restore; not reproduced here).
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature_K: float | Sequence[float],
        andersen_prob: float | Sequence[float],
        fixcm: bool = True,
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        self.temp = kelvin_to_ev(np.asarray(temperature_K, dtype=float))
        self.andersen_prob = andersen_prob
        self.fix_com = fixcm
        self.rng = np.random if rng is None else rng
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> AndersenEngine:
        if self.fix_com:
            _check_fixcm_constraints(self.systems.atoms)
        return AndersenEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(ev_to_kelvin(self.temp), "temperature_K"),
            andersen_prob=self._per_system_value(self.andersen_prob, "andersen_prob"),
            fixcm=bool(self.fix_com),
            noise=ase_noise(self.rng, len(self.systems), self.systems.device),
        )

    def set_temperature(self, temperature_K: float) -> None:
        self._andersen.temperature = self._per_system_value(temperature_K, "temperature_K")
        self.temp = kelvin_to_ev(np.asarray(temperature_K, dtype=float))

    def set_andersen_prob(self, andersen_prob: float) -> None:
        self._andersen.andersen_prob = self._per_system_value(andersen_prob, "andersen_prob")
        self.andersen_prob = andersen_prob

    def set_timestep(self, timestep: float) -> None:
        self.dt = timestep

    @property
    def _andersen(self) -> AndersenEngine:
        assert isinstance(self.engine, AndersenEngine)
        return self.engine
