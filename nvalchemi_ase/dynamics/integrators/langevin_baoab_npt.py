"""Langevin BAOAB with a variable cell (NPH / NPT), ``ase.md.langevinbaoab.LangevinBAOAB``'s scheme, batched.

Atoms: Langevin (or none: NPH) in the BAOAB splitting; cell: Langevin-Hoover
(Quigley and Probert, J. Chem. Phys. 120, 11432 (2004)) with a cell momentum
p_ε per system, hydrostatic (volume only) or full cell. One step, with
ASE's order of moves::

    B_cell B  A_cell A  O(drag from p_ε) O_cell  A A_cell  F, σ  force_ε  B B_cell

The math is in :mod:`nvalchemi_ase.ops.baoab`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.integrators._variable_cell import require_stress
from nvalchemi_ase.dynamics.noise import Draw
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import baoab, segment_broadcast
from nvalchemi_ase.ops.segment import segment_sum
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import fs, kB


class LangevinBAOABNPT(Thermostat):
    """ASE's LangevinBAOAB with ``externalstress``: NPH (no temperature) or NPT, per system.

    Parameters
    ----------
    model
        Batched model returning forces and stress.
    dt
        Time step in fs.
    externalstress
        Target stress in eV/Å³ (ASE's sign: negative compresses), the same for
        every system: a scalar when ``hydrostatic``; else a scalar, 3 values
        (diagonal), 6 (Voigt) or a 3×3 matrix.
    hydrostatic
        Scale the cell (volume only) instead of straining it freely.
    temperature
        Target temperature in K (a float or one per system), or ``None`` for NPH.
    T_tau
        Atom Langevin time 1/γ in fs (default 50 dt when thermostatted).
    P_tau
        Cell time scale in fs (default 20 T_tau, or 1000 dt without one).
    P_mass
        Barostat mass W in ASE's units (eV × ASE time²), a float or one per
        system; ``None``: ASE's heuristic ``((P_tau/4)/1.66 fs · N^(1/6))²``
        times ``P_mass_factor``.
    P_mass_factor
        Factor on the heuristic W.
    disable_cell_langevin
        No Langevin on the cell even when thermostatted.
    seed, noise, n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.integrators.langevin_baoab.LangevinBAOAB`.

    Notes
    -----
    :meth:`draw_noise` returns ``(ξ [N, 3] or None, η [B, k, k] or None)``,
    asking the noise source for ASE's draws (``normal(size=(n, 3))`` then
    ``normal()`` or ``normal(size=(3, 3))`` per system):
    :class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` with one generator per
    system reproduces ASE's run of each system. p_ε and the cell force are
    per-system batch fields (``baoab_p_eps``, ``baoab_force_eps``, ``[B, 1, 1]``
    hydrostatic or ``[B, 3, 3]``), so they travel with their systems through
    inflight refills and are held, with the cell, for converged systems. A
    system's cell force is NaN until its first step computes it (new systems
    included).
    """

    state_fields = ("baoab_p_eps", "baoab_force_eps", "cell")

    T_tau = PerSystemParameter("fs", positive=True)
    P_tau = PerSystemParameter("fs", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        externalstress: Any,
        hydrostatic: bool = False,
        temperature: ParameterValue | None = None,
        T_tau: ParameterValue | None = None,
        P_tau: ParameterValue | None = None,
        P_mass: ParameterValue | None = None,
        P_mass_factor: float = 1.0,
        disable_cell_langevin: bool = False,
        seed: int | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        require_stress(model)
        thermostatted = temperature is not None
        super().__init__(
            model, dt, 0.0 if temperature is None else temperature, seed, n_steps, hooks, convergence_hook,
            **options,
        )  # fmt: skip
        self.request_property("stress")
        self.thermostatted = thermostatted
        self.hydrostatic = bool(hydrostatic)
        self.externalstress = baoab.external_stress_tensor(externalstress, self.hydrostatic)
        self.disable_cell_langevin = bool(disable_cell_langevin)
        if T_tau is None:
            T_tau = 50.0 * self.dt if thermostatted else 1.0  # unused without a temperature
        self.T_tau = T_tau
        if P_tau is None:
            P_tau = 20.0 * torch.as_tensor(self.T_tau) if thermostatted else 1000.0 * self.dt
        self.P_tau = P_tau
        self.P_mass = None if P_mass is None else torch.as_tensor(P_mass, dtype=torch.float64)
        self.P_mass_factor = float(P_mass_factor)

    @property
    def cell_langevin(self) -> bool:
        """Whether the cell gets Langevin noise and friction."""
        return self.thermostatted and not self.disable_cell_langevin

    # ------------------------------------------------------------------ set-up
    def prepare(self, batch: Batch) -> None:
        B, dt = batch.num_graphs, self.dt_internal
        dtype, device = batch.dtype, batch.device
        kT = self.per_system("temperature", batch, kB)
        atoms = segment_sum(torch.ones(batch.num_nodes, dtype=dtype, device=device), batch.batch_idx, B)
        if self.P_mass is None:
            mass = baoab.heuristic_barostat_mass(self.per_system("P_tau", batch), atoms, self.P_mass_factor)
        else:
            mass = self.P_mass.to(dtype=dtype, device=device).expand(B).contiguous()
        self._mass = mass.view(-1, 1, 1)
        self._ndof = self.degrees_of_freedom(batch)
        self._external = self.externalstress.to(dtype=dtype, device=device)
        self._sqrt_masses = torch.sqrt(batch.masses).unsqueeze(1)
        self._gamma = torch.zeros(B, dtype=dtype, device=device)
        if self.thermostatted:
            self._gamma = 1.0 / self.per_system("T_tau", batch, fs)
            _, prefactor = baoab.ornstein_uhlenbeck_coefficients(dt, kT, self._gamma)
            self._prefactor = segment_broadcast(prefactor, batch.batch_idx).unsqueeze(1)
        if self.cell_langevin:
            gamma = 1.0 / self.per_system("P_tau", batch, fs)
            decay, prefactor = baoab.ornstein_uhlenbeck_coefficients(dt, kT, gamma)
            self._cell_decay = decay.view(-1, 1, 1)
            self._cell_prefactor = (prefactor * torch.sqrt(mass)).view(-1, 1, 1)

    def init_state(self, batch: Batch) -> None:
        super().init_state(batch)
        k = 1 if self.hydrostatic else 3
        shape = (batch.num_graphs, k, k)
        for name, fill in (("baoab_p_eps", 0.0), ("baoab_force_eps", float("nan"))):
            if name not in batch.field_names():
                batch.add_field(
                    name, torch.full(shape, fill, dtype=batch.dtype, device=batch.device), Scope.SYSTEM
                )
            elif tuple(getattr(batch, name).shape) != shape:
                raise ValueError(
                    f"batch field {name} has shape {tuple(getattr(batch, name).shape)}, this engine "
                    f"needs {shape} (hydrostatic {self.hydrostatic})"
                )

    def draw_noise(self, batch: Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """This step's ``(ξ [N, 3], η [B, k, k])`` standard normals (``None`` where not thermostatted)."""
        if not self.thermostatted:
            return None, None
        draws = [Draw("normal", per_atom=True, shape=(3,))]
        if self.cell_langevin:  # ASE: normal() hydrostatic, else normal(size=(3, 3))
            draws.append(Draw("normal", per_atom=False, shape=() if self.hydrostatic else (3, 3)))
        drawn = self.draw(batch, *draws)
        k = 1 if self.hydrostatic else 3
        return drawn[0], drawn[1].reshape(-1, k, k) if self.cell_langevin else None

    # ------------------------------------------------------------------ the step
    def cell_force(self, batch: Batch) -> torch.Tensor:
        """ASE's ``force_eps`` from the current velocities, stress and cell."""
        v = batch.velocities
        outer = (batch.masses.unsqueeze(1) * v).unsqueeze(2) * v.unsqueeze(1)
        kinetic = segment_sum(outer, batch.batch_idx, batch.num_graphs)
        volume = torch.linalg.det(batch.cell).abs()
        return baoab.cell_force(volume, batch.stress, kinetic, self._external, self._ndof, self.hydrostatic)

    def _strain(
        self, batch: Batch, cell: torch.Tensor, positions: torch.Tensor, p_eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Barostat A (½ dt): the new cell, and positions scaled with it (``set_cell(..., True)``)."""
        new_cell = baoab.strained_cell(cell, p_eps, self._mass, 0.5 * self.dt_internal)
        scaling = torch.linalg.solve(cell, new_cell)
        per_atom = segment_broadcast(scaling, batch.batch_idx)
        return new_cell, torch.einsum("nj,njk->nk", positions, per_atom)

    def pre_update(self, batch: Batch) -> None:
        self.refresh(batch)
        force_eps = batch.baoab_force_eps
        # a system's first step (NaN: not computed yet) takes the force of its current state, branch-free
        force_eps = torch.where(force_eps.isnan(), self.cell_force(batch), force_eps)
        dt, half = self.dt_internal, 0.5 * self.dt_internal
        p_eps = batch.baoab_p_eps + half * force_eps
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        cell, positions = self._strain(batch, batch.cell, batch.positions, p_eps)
        positions = drift(positions, velocities, half)
        drag = segment_broadcast(
            baoab.velocity_drag(self._gamma, p_eps, self._mass, self._ndof, dt), batch.batch_idx
        )
        xi, eta = self.draw_noise(batch)
        if self.hydrostatic:
            velocities = velocities * drag.view(-1, 1)
        else:
            velocities = torch.einsum("nij,nj->ni", drag, velocities)
        if xi is not None:
            velocities = velocities + self._prefactor * (xi / self._sqrt_masses)
        if eta is not None:
            p_eps = baoab.cell_ornstein_uhlenbeck(p_eps, self._cell_decay, self._cell_prefactor, eta)
        positions = drift(positions, velocities, half)
        cell, positions = self._strain(batch, cell, positions, p_eps)
        batch.positions, batch.velocities, batch.cell = positions, velocities, cell
        batch.baoab_p_eps = p_eps

    def post_update(self, batch: Batch) -> None:
        force_eps = self.cell_force(batch)
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
        batch.baoab_p_eps = batch.baoab_p_eps + 0.5 * self.dt_internal * force_eps
        batch.baoab_force_eps = force_eps
