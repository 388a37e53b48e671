"""``NVTBerendsen``: ``ase.md.nvtberendsen.NVTBerendsen`` over the batched Berendsen engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from nvalchemi_ase.dynamics import NVTBerendsen as BerendsenEngine
from nvalchemi_ase.md.md import MolecularDynamics, process_temperature
from nvalchemi_ase.units import internal_to_fs

__all__ = ["NVTBerendsen"]


class NVTBerendsen(MolecularDynamics):
    """Berendsen (constant N, V, T) molecular dynamics, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature
        Target temperature in **K** (ASE's legacy slot here is kelvin, no warning).
    taut
        Coupling time in ASE time units. Required.
    fixcm
        Remove the mean momentum in every step (ASE's default True).
    temperature_K
        Alias of ``temperature``.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.
    """

    rederive_velocities = False  # ASE sets the momenta after the drift instead

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature: float | None = None,
        taut: float | None = None,
        fixcm: bool = True,
        *,
        temperature_K: Any = None,
        **kwargs: Any,
    ) -> None:
        if taut is None:
            raise TypeError("Missing 'taut' argument.")
        if isinstance(temperature_K, list | tuple):
            temperature_K = np.asarray(temperature_K, dtype=float)
        self.taut = taut
        self.temperature = process_temperature(temperature, temperature_K, "K")
        self.fix_com = fixcm
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> BerendsenEngine:
        engine = BerendsenEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(self.temperature, "temperature"),
            taut=self._per_system_value(internal_to_fs(np.asarray(self.taut)), "taut"),
            fixcm=bool(self.fix_com),
        )
        engine.fixed_degrees_of_freedom = self.systems.degrees_of_freedom()  # ASE's count
        return engine

    def set_taut(self, taut: float) -> None:
        self._berendsen.taut = self._per_system_value(internal_to_fs(np.asarray(taut)), "taut")
        self.taut = taut

    def get_taut(self) -> float:
        return self.taut

    def set_temperature(
        self, temperature: float | None = None, *, temperature_K: float | None = None
    ) -> None:
        value = process_temperature(temperature, temperature_K, "K")
        self._berendsen.temperature = self._per_system_value(value, "temperature")
        self.temperature = value

    def get_temperature(self) -> float:
        return self.temperature

    def set_timestep(self, timestep: float) -> None:
        self.dt = timestep

    def get_timestep(self) -> float:
        return self.dt

    @property
    def _berendsen(self) -> BerendsenEngine:
        assert isinstance(self.engine, BerendsenEngine)
        return self.engine
