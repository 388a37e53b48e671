"""Nosé–Hoover chain NVT in ASE's scheme (see :mod:`nvalchemi_ase.ops.nose_hoover`), batched.

Every system carries its own chain (positions ``nhc_eta`` and momenta
``nhc_p_eta``, ``[B, tchain]`` batch fields), its own target temperature and
damping time. Deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import AtomCategory, Batch, Scope
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import nose_hoover, segment_broadcast
from nvalchemi_ase.ops.thermo import kinetic_energy
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import fs, kB


class NoseHooverChainNVT(Thermostat):
    """Nosé–Hoover chain thermostat, ``ase.md.nose_hoover_chain.NoseHooverChainNVT``'s algorithm.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float, or one per system (``[B]`` tensor or sequence).
    tdamp
        Characteristic time τ of the thermostat in fs (ASE suggests 100 dt): a float or one per system.
    tchain
        Number of thermostats in each chain (>= 1).
    tloop
        Number of sub-steps of each chain half step (>= 1).
    frozen_momenta
        Keep ASE's private velocities of frozen (``FixAtoms``) atoms in a
        ``nhc_frozen_velocities`` field: ASE's class kicks them with the forces
        and scales them with the chain, whose kinetic energy counts them, while
        the atoms themselves stay put at zero momentum. False: the chain sees
        frozen atoms at rest.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    As in ASE, the chain drives 3N degrees of freedom, N counting every atom
    of the system (frozen ones too), and starts at η = p_η = 0 when a system
    first meets this engine. :meth:`thermostat_energy` is ASE's
    ``get_thermostat_energy``: with the potential and kinetic energies it sums
    to a conserved quantity.
    """

    state_fields: tuple[str, ...] = ("nhc_eta", "nhc_p_eta")
    tdamp = PerSystemParameter("fs", positive=True)

    stochastic = False

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        tdamp: ParameterValue,
        tchain: int = 3,
        tloop: int = 1,
        frozen_momenta: bool = False,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        for name, value in (("tchain", tchain), ("tloop", tloop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(model, dt, temperature, None, n_steps, hooks, convergence_hook, **options)
        self.tdamp = tdamp
        self.tchain = tchain
        self.tloop = tloop
        self.frozen_momenta = bool(frozen_momenta)
        if self.frozen_momenta:
            self.state_fields = (*type(self).state_fields, "nhc_frozen_velocities")

    def init_state(self, batch: Batch) -> None:
        super().init_state(batch)
        for name in ("nhc_eta", "nhc_p_eta"):
            if name not in batch.field_names():
                zeros = torch.zeros(batch.num_graphs, self.tchain, dtype=batch.dtype, device=batch.device)
                batch.add_field(name, zeros, Scope.SYSTEM)
            elif getattr(batch, name).shape[1] != self.tchain:
                raise ValueError(
                    f"batch field {name} holds chains of {getattr(batch, name).shape[1]}, "
                    f"this engine's tchain is {self.tchain}"
                )
        if self.frozen_momenta and "nhc_frozen_velocities" not in batch.field_names():
            batch.add_field("nhc_frozen_velocities", batch.velocities.clone(), Scope.ATOM)

    def prepare(self, batch: Batch) -> None:
        self._kT = self.per_system("temperature", batch, kB)
        self._dof = 3.0 * torch.as_tensor(batch.counts, dtype=batch.dtype, device=batch.device)
        tdamp = self.per_system("tdamp", batch, fs)
        self._masses = nose_hoover.chain_masses(self._kT, tdamp, self._dof, self.tchain)

    def thermostat_energy(self, batch: Batch) -> torch.Tensor:
        """``[B]`` the chains' energy, eV (ASE's ``get_thermostat_energy``)."""
        self.refresh(batch)
        return nose_hoover.thermostat_energy(
            batch.nhc_eta, batch.nhc_p_eta, self._masses, self._kT, self._dof
        )

    def integrate_chain(self, batch: Batch, delta: float) -> None:
        """Advance every chain by ``delta`` (internal time) and scale the velocities accordingly."""
        self.refresh(batch)
        index = batch.batch_idx
        twice_kinetic = 2.0 * kinetic_energy(batch.velocities, batch.masses, index, batch.num_graphs)
        scale, batch.nhc_eta, batch.nhc_p_eta = nose_hoover.integrate_chain(
            twice_kinetic,
            batch.nhc_eta,
            batch.nhc_p_eta,
            self._masses,
            self._kT,
            self._dof,
            delta,
            self.tloop,
        )
        batch.velocities = batch.velocities * segment_broadcast(scale, index).unsqueeze(1)

    def _resume_frozen(self, batch: Batch) -> None:
        """``frozen_momenta``: give the constrained components back their private velocities.

        Those are the frozen atoms' or, with a constraint component
        (:attr:`constraints`), every component a constraint changes (ASE's
        private momenta ``_p``, which the chain reads).
        """
        if not self.frozen_momenta:
            return
        if self.constraints is None:
            private = (batch.atom_categories == AtomCategory.FROZEN.value).unsqueeze(1)
        else:
            private = self.constraints.constrained_components(batch)
        batch.velocities = torch.where(private, batch.nhc_frozen_velocities, batch.velocities)

    def _keep_frozen(self, batch: Batch) -> None:
        """``frozen_momenta``: remember the frozen atoms' velocities (a freeze hook zeroes them next)."""
        if self.frozen_momenta:
            batch.nhc_frozen_velocities = batch.velocities.clone()

    def pre_update(self, batch: Batch) -> None:
        dt = self.dt_internal
        self._resume_frozen(batch)
        self.integrate_chain(batch, dt / 2)
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        batch.positions = drift(batch.positions, velocities, dt)
        batch.velocities = velocities
        self._keep_frozen(batch)

    def post_update(self, batch: Batch) -> None:
        dt = self.dt_internal
        self._resume_frozen(batch)
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        self.integrate_chain(batch, dt / 2)
        self._keep_frozen(batch)
