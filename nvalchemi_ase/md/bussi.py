"""``Bussi``: ``ase.md.bussi.Bussi`` over the batched Bussi engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from nvalchemi_ase._lookalike.random import ase_noise
from nvalchemi_ase.dynamics import Bussi as BussiEngine
from nvalchemi_ase.md.verlet import VelocityVerlet
from nvalchemi_ase.units import ev_to_kelvin, internal_to_fs, kelvin_to_ev

__all__ = ["Bussi"]


class Bussi(VelocityVerlet):
    """Bussi stochastic velocity rescaling (NVT), ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Target temperature in K (one per system allowed for a list).
    taut
        Coupling time in ASE time units (one per system allowed for a list).
    rng
        As :class:`~nvalchemi_ase.md.langevin.Langevin`'s: ``numpy.random`` by
        default, one generator per system, or a ``torch.Generator``. Per step
        and system ASE draws ``standard_normal()`` then ``standard_gamma``.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    Raises ValueError if a system starts with zero kinetic energy (as ASE).
    ``transferred_energy`` (eV; an array for a list) reads the device.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature_K: float | Sequence[float],
        taut: float | Sequence[float],
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        self.temp = kelvin_to_ev(np.asarray(temperature_K, dtype=float))
        self.taut = np.asarray(taut, dtype=float) if isinstance(taut, list | tuple) else taut
        self.rng = np.random if rng is None else rng
        super().__init__(atoms, timestep, **kwargs)
        dof = self.systems.degrees_of_freedom()
        self.ndof = dof[0] if len(dof) == 1 else dof
        self.target_kinetic_energy = 0.5 * self.temp * self.ndof
        for index, system in enumerate(self.systems.atoms):
            if np.isclose(system.get_kinetic_energy(), 0.0, rtol=0, atol=1e-12):
                raise ValueError(
                    f"atoms[{index}]: Initial kinetic energy is zero. "
                    "Please set the initial velocities before running Bussi NVT."
                )

    def _make_engine(self, model: Any) -> BussiEngine:
        engine = BussiEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(ev_to_kelvin(self.temp), "temperature_K"),
            taut=self._per_system_value(internal_to_fs(np.asarray(self.taut)), "taut"),
            noise=ase_noise(self.rng, len(self.systems), self.systems.device),
        )
        engine.fixed_degrees_of_freedom = self.systems.degrees_of_freedom()
        return engine

    @property
    def transferred_energy(self) -> float | np.ndarray:
        """Energy the thermostat put in so far (eV): E_tot − transferred_energy is conserved."""
        batch = self.systems.batch
        if "bussi_transferred_energy" not in batch.field_names():
            return 0.0 if len(self.systems) == 1 else np.zeros(len(self.systems))
        values = batch.bussi_transferred_energy.detach().cpu().numpy().astype(float)
        return float(values[0]) if len(values) == 1 else values
