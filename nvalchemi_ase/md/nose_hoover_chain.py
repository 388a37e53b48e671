"""``NoseHooverChainNVT``, ``MTKNPT``, ``IsotropicMTKNPT``: ``ase.md.nose_hoover_chain``, batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms

from nvalchemi_ase._lookalike.constraints import SUPPORTED, no_fixcom_mixture, only_constraints
from nvalchemi_ase.dynamics import NoseHooverChainNVT as NoseHooverEngine
from nvalchemi_ase.md._mtk import MTKNPT, IsotropicMTKNPT
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.ops.thermo import kinetic_energy
from nvalchemi_ase.units import internal_to_fs

__all__ = ["MTKNPT", "IsotropicMTKNPT", "NoseHooverChainNVT"]


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
    atoms included. ``FixCartesian``, ``FixCom``, ``FixedPlane`` and
    ``Hookean`` (alone or mixed) run as in ASE too: the chain reads the
    private, unconstrained momenta of the constrained components (ASE's
    ``_p``; host edits of those are not taken into account), the ``Atoms``
    show them constrained. ``FixBondLength(s)`` and other constraints raise
    NotImplementedError (ASE's private positions drift away from the bonds
    and it re-applies the constraint three times a step), and so does
    ``FixCom`` next to anything but ``Hookean`` (ASE's ``FixCom`` then moves
    the atoms the other constraint holds).
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
        only_constraints(
            self.systems.atoms,
            type(self).__name__,
            SUPPORTED,
            "ASE's private positions drift off other constraints (e.g. bonds), which it re-applies "
            "several times a step; not reproduced here",
        )
        no_fixcom_mixture(self.systems.atoms, type(self).__name__)
        return NoseHooverEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            tdamp=self._per_system_value(internal_to_fs(np.asarray(self.tdamp)), "tdamp"),
            tchain=self.tchain,
            tloop=self.tloop,
            frozen_momenta=True,
        )

    def get_conserved_energy(self) -> float | np.ndarray:
        """Potential + kinetic + thermostat energy (eV; an array for a list), from the device."""
        assert isinstance(self.engine, NoseHooverEngine)
        self._prime()
        batch = self.systems.batch
        kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        total = batch.energy.view(-1) + kinetic + self.engine.thermostat_energy(batch)
        values = total.detach().cpu().numpy().astype(float)
        return float(values[0]) if len(values) == 1 else values
