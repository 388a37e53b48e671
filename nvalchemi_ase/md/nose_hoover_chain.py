"""``NoseHooverChainNVT``: ``ase.md.nose_hoover_chain.NoseHooverChainNVT`` over the batched engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units

from nvalchemi_ase.dynamics import NoseHooverChainNVT as NoseHooverEngine
from nvalchemi_ase.md.md import MolecularDynamics

__all__ = ["NoseHooverChainNVT"]


class NoseHooverChainNVT(MolecularDynamics):
    """Isothermal MD with a Nosé–Hoover chain, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Target temperature in K (one per system allowed for a list).
    tdamp
        Thermostat damping time in ASE time units (one per system allowed).
    tchain, tloop
        Chain length and number of sub-steps.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    ASE's class keeps private copies of positions and momenta, so it ignores
    constraints in its thermostat and overwrites edits made between runs.
    Here edits are taken into account, and constraints raise NotImplementedError.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature_K: float | Sequence[float],
        tdamp: float | Sequence[float],
        tchain: int = 3,
        tloop: int = 1,
        **kwargs: Any,
    ) -> None:
        self.temperature_K = temperature_K
        self.tdamp, self.tchain, self.tloop = tdamp, tchain, tloop
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> NoseHooverEngine:
        self._forbid_constraints("NoseHooverChainNVT does not apply constraints (ASE's ignores them)")
        return NoseHooverEngine(
            model,
            self.dt / units.fs,
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            tdamp=self._per_system_value(np.asarray(self.tdamp) / units.fs, "tdamp"),
            tchain=self.tchain,
            tloop=self.tloop,
        )

    def get_conserved_energy(self) -> float | np.ndarray:
        """Potential + kinetic + thermostat energy (eV; an array for a list), from the device."""
        assert isinstance(self.engine, NoseHooverEngine)
        self._prime()
        batch = self.systems.batch
        masses = batch.masses.unsqueeze(1)
        kinetic = (0.5 * masses * batch.velocities.square()).sum(dim=1)
        kinetic = kinetic.new_zeros(batch.num_graphs).index_add_(0, batch.batch_idx, kinetic)
        total = batch.energy.view(-1) + kinetic + self.engine.thermostat_energy(batch)
        values = total.detach().cpu().numpy().astype(float)
        return float(values[0]) if len(values) == 1 else values
