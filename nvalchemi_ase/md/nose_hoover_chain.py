"""``NoseHooverChainNVT``: ``ase.md.nose_hoover_chain.NoseHooverChainNVT`` over the batched engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.constraints import FixAtoms

from nvalchemi_ase.dynamics import NoseHooverChainNVT as NoseHooverEngine
from nvalchemi_ase.md.md import MolecularDynamics

__all__ = ["NoseHooverChainNVT", "only_fixatoms"]


def only_fixatoms(systems: Sequence[Atoms], name: str) -> None:
    """Raise NotImplementedError naming the first constraint that is not ``FixAtoms``."""
    for index, atoms in enumerate(systems):
        for constraint in atoms.constraints:
            if type(constraint) is not FixAtoms:
                raise NotImplementedError(
                    f"atoms[{index}] has a {type(constraint).__name__} constraint: "
                    f"{name} supports only FixAtoms"
                )


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
    ASE's class keeps private copies of positions and momenta and overwrites
    edits made between runs; here edits are taken into account. ``FixAtoms``
    runs as in ASE: the fixed atoms stay put with zero momenta, while their
    private momenta (kicked by the forces, scaled by the chain) count in the
    chain's kinetic energy, and the chain drives 3N degrees of freedom, fixed
    atoms included. Other constraints raise NotImplementedError.
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
        only_fixatoms(self.systems.atoms, type(self).__name__)
        return NoseHooverEngine(
            model,
            self.dt / units.fs,
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            tdamp=self._per_system_value(np.asarray(self.tdamp) / units.fs, "tdamp"),
            tchain=self.tchain,
            tloop=self.tloop,
            frozen_momenta=True,
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
