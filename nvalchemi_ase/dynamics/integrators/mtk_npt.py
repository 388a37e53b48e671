"""Martyna–Tobias–Klein NPT (isotropic or full cell), ASE's scheme (:mod:`nvalchemi_ase.ops.mtk`), batched.

Every system carries its own atom thermostat chain (``nhc_eta``,
``nhc_p_eta``, as :class:`~nvalchemi_ase.dynamics.NoseHooverChainNVT`), its
own barostat chain (``mtk_xi``, ``mtk_p_xi``, ``[B, pchain]``) and cell
momentum (``mtk_p_cell``, ``[B, 1, 1]`` isotropic or ``[B, 3, 3]``), all batch
fields, so they follow their system through refills; and its own
temperature, pressure and damping times. Deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter
from nvalchemi_ase.dynamics.integrators._variable_cell import ensure_stress, require_stress
from nvalchemi_ase.dynamics.integrators.nose_hoover import NoseHooverChainNVT
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import cell as cell_ops
from nvalchemi_ase.ops import mtk, nose_hoover
from nvalchemi_ase.units import fs


class MTKNPT(NoseHooverChainNVT):
    """MTK isothermal-isobaric MD, ``ase.md.nose_hoover_chain.MTKNPT`` (or ``IsotropicMTKNPT``)'s algorithm.

    Parameters
    ----------
    model
        Batched model returning forces and stress.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float or one per system.
    pressure
        Target pressure in eV/Å³ (positive compresses): a float or one per system.
    tdamp, pdamp
        Thermostat and barostat times in fs (ASE suggests 100 dt and 1000 dt): a float or one per system.
    tchain, pchain
        Lengths of the atom and barostat chains (>= 1).
    tloop, ploop
        Sub-steps of each chain half step (>= 1).
    isotropic
        Volume fluctuations only (``IsotropicMTKNPT``) instead of the full cell.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    As in ASE, constraints are not supported (frozen atoms would still be
    moved by the cell) and the chains and cell momenta start at zero when a
    system first meets this engine. :meth:`conserved_energy` is ASE's
    ``get_conserved_energy``.
    """

    pressure = PerSystemParameter("eV/Å³", signed=True)
    pdamp = PerSystemParameter("fs", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        pressure: ParameterValue,
        tdamp: ParameterValue,
        pdamp: ParameterValue,
        tchain: int = 3,
        pchain: int = 3,
        tloop: int = 1,
        ploop: int = 1,
        isotropic: bool = False,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        require_stress(model)
        for name, value in (("pchain", pchain), ("ploop", ploop)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        super().__init__(
            model, dt, temperature, tdamp, tchain, tloop, False, n_steps, hooks, convergence_hook, **options
        )
        self.request_property("stress")
        self.pressure = pressure
        self.pdamp = pdamp
        self.pchain = pchain
        self.ploop = ploop
        self.isotropic = bool(isotropic)
        self.state_fields = (*type(self).state_fields, "mtk_xi", "mtk_p_xi", "mtk_p_cell", "cell")

    @property
    def cell_dof(self) -> int:
        """Degrees of freedom of the cell: 1 (isotropic) or 9."""
        return 1 if self.isotropic else 9

    def init_state(self, batch: Batch) -> None:
        super().init_state(batch)
        B, k = batch.num_graphs, 1 if self.isotropic else 3
        shapes = {"mtk_xi": (B, self.pchain), "mtk_p_xi": (B, self.pchain), "mtk_p_cell": (B, k, k)}
        for name, shape in shapes.items():
            if name not in batch.field_names():
                zeros = torch.zeros(shape, dtype=batch.dtype, device=batch.device)
                batch.add_field(name, zeros, Scope.SYSTEM)
            elif tuple(getattr(batch, name).shape) != shape:
                raise ValueError(
                    f"batch field {name} has shape {tuple(getattr(batch, name).shape)}, this engine "
                    f"needs {shape} (pchain {self.pchain}, isotropic {self.isotropic})"
                )

    def prepare(self, batch: Batch) -> None:
        super().prepare(batch)
        self._num_atoms = self._dof / 3.0
        self._pressure = self.per_system("pressure", batch)
        pdamp = self.per_system("pdamp", batch, fs)
        self._W = mtk.barostat_mass(self._kT, pdamp, self._num_atoms, self.isotropic)
        nine = torch.full_like(self._kT, 9.0)
        self._R = nose_hoover.chain_masses(self._kT, pdamp, nine, self.pchain)
        self._cell_dof = torch.full_like(self._kT, float(self.cell_dof))

    # ------------------------------------------------------------------ moves
    def integrate_barostat_chain(self, batch: Batch, delta: float) -> None:
        """The barostat's chain over ``delta``, scaling the cell momenta."""
        p_cell = batch.mtk_p_cell
        twice_kinetic = p_cell.square().sum(dim=(1, 2)) / self._W
        scale, batch.mtk_xi, batch.mtk_p_xi = nose_hoover.integrate_chain(
            twice_kinetic, batch.mtk_xi, batch.mtk_p_xi, self._R, self._kT, self._cell_dof, delta, self.ploop
        )
        batch.mtk_p_cell = p_cell * scale.view(-1, 1, 1)

    def kick_cell(self, batch: Batch, delta: float) -> None:
        """p_g += δ G from the current stress (with the ideal-gas term) and velocities."""
        index, B = batch.batch_idx, batch.num_graphs
        kinetic = cell_ops.kinetic_tensor(batch.velocities, batch.masses, index, B)
        volume = cell_ops.volume(batch.cell)
        stress = cell_ops.stress_with_ideal_gas(batch.stress, kinetic, volume)
        twice_kinetic = kinetic.diagonal(dim1=-2, dim2=-1).sum(-1)
        force = mtk.cell_force(stress, volume, self._pressure, twice_kinetic, self._num_atoms, self.isotropic)
        batch.mtk_p_cell = batch.mtk_p_cell + delta * force

    def kick(self, batch: Batch, delta: float) -> None:
        """L₂: the velocities over ``delta`` under the forces and the cell momentum."""
        batch.velocities = mtk.kick_velocities(
            batch.velocities, batch.forces, batch.masses, batch.mtk_p_cell, self._W, self._num_atoms,
            batch.batch_idx, delta,
        )  # fmt: skip

    def pre_update(self, batch: Batch) -> None:
        ensure_stress(self, batch)
        self.refresh(batch)
        dt = self.dt_internal
        self.integrate_barostat_chain(batch, dt / 2)
        self.integrate_chain(batch, dt / 2)
        self.kick_cell(batch, dt / 2)
        self.kick(batch, dt / 2)
        p_cell = batch.mtk_p_cell
        batch.positions = mtk.move_positions(
            batch.positions, batch.velocities, p_cell, self._W, batch.batch_idx, dt
        )
        batch.cell = mtk.move_cell(batch.cell, p_cell, self._W, dt)

    def post_update(self, batch: Batch) -> None:
        dt = self.dt_internal
        self.kick(batch, dt / 2)
        self.kick_cell(batch, dt / 2)
        self.integrate_chain(batch, dt / 2)
        self.integrate_barostat_chain(batch, dt / 2)

    # ------------------------------------------------------------------ observables
    def barostat_energy(self, batch: Batch) -> torch.Tensor:
        """``[B]`` the barostat chain's energy and the cell's kinetic energy Σ p_g²/(2W), eV."""
        self.refresh(batch)
        chain = nose_hoover.thermostat_energy(batch.mtk_xi, batch.mtk_p_xi, self._R, self._kT, self._cell_dof)
        return chain + batch.mtk_p_cell.square().sum(dim=(1, 2)) / (2 * self._W)

    def conserved_energy(self, batch: Batch) -> torch.Tensor:
        """``[B]`` E_pot + E_kin + thermostat + barostat + P V, eV (ASE's ``get_conserved_energy``)."""
        kinetic = cell_ops.kinetic_tensor(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        return (
            batch.energy.view(-1)
            + 0.5 * kinetic.diagonal(dim1=-2, dim2=-1).sum(-1)
            + self.thermostat_energy(batch)
            + self.barostat_energy(batch)
            + self._pressure * cell_ops.volume(batch.cell)
        )
