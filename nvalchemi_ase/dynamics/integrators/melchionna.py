"""Melchionna NPT (Nosé–Hoover and Parrinello–Rahman), ASE's ``MelchionnaNPT`` / ``NPT`` scheme, batched.

The math is in :mod:`nvalchemi_ase.ops.melchionna`. The scheme is not
self-starting: a system's past (scaled positions, cell, η, ζ) is made up
by a backward step the first time it steps in this engine, as ASE's
``initialize``. Its state lives in batch fields (``npt_*``), so it follows
the system through refills.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.integrators._variable_cell import ensure_stress, require_stress
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import berendsen, melchionna, segment_broadcast
from nvalchemi_ase.ops import cell as cell_ops
from nvalchemi_ase.ops.thermo import kinetic_energy
from nvalchemi_ase.units import fs, kB

_SYSTEM_FIELDS = {
    "npt_h_past": (3, 3), "npt_eta": (3, 3), "npt_eta_past": (3, 3),
    "npt_zeta": (), "npt_zeta_past": (), "npt_zeta_integrated": (), "npt_pfact": (), "npt_ready": (),
}  # fmt: skip
_ATOM_FIELDS = ("npt_q", "npt_q_past", "npt_q_future")


def stress_tensor(value: Any) -> torch.Tensor:
    """ASE's ``externalstress`` forms as ``[6]`` or ``[B, 6]`` Voigt, eV/Å³.

    A scalar pressure p (the stress −p on the diagonal), a 6-vector or a
    symmetric 3×3 apply to every system; ``[B]`` pressures (B ≠ 6: a
    6-vector is Voigt, as in ASE), ``[B, 6]`` or ``[B, 3, 3]`` give one per system.
    """
    stress = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if stress.dim() == 0 or (stress.dim() == 1 and stress.shape[0] != 6):
        p = stress.reshape(-1)
        zeros = torch.zeros_like(p)
        return torch.stack([-p, -p, -p, zeros, zeros, zeros], dim=-1).squeeze(0)
    if stress.dim() in (2, 3) and stress.shape[-2:] == (3, 3):
        if not torch.equal(stress, stress.transpose(-1, -2)):
            raise ValueError("The external stress must be a symmetric tensor.")
        s = stress
        voigt = [s[..., 0, 0], s[..., 1, 1], s[..., 2, 2], s[..., 1, 2], s[..., 0, 2], s[..., 0, 1]]
        return torch.stack(voigt, dim=-1)
    if stress.dim() <= 2 and stress.shape[-1] == 6:
        return stress
    raise ValueError("The external stress has the wrong shape.")


def strain_mask(mask: Any) -> torch.Tensor:
    """ASE's ``set_mask``: ``None`` (all), 3 axes (outer product) or a 3×3 array, as a 0/1 ``[3, 3]``."""
    values = torch.ones(3) if mask is None else torch.as_tensor(mask, dtype=torch.float64)
    if values.shape not in ((3,), (3, 3)):
        raise RuntimeError("The mask has the wrong shape (must be a 3-vector or 3x3 matrix)")
    values = (values != 0).to(torch.float64)
    return torch.outer(values, values) if values.shape == (3,) else values


class MelchionnaNPT(Thermostat):
    """Constant-stress, constant-temperature MD, ``ase.md.melchionna.MelchionnaNPT``'s algorithm.

    Parameters
    ----------
    model
        Batched model returning forces and stress.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float or one per system.
    externalstress
        eV/Å³, positive in tension (see :func:`stress_tensor`): a scalar
        pressure p (the stress −p), a 6-vector, a symmetric 3×3, or one per system.
    ttime
        Thermostat time in fs (a float or one per system), or ``None``: no thermostat.
    pfactor
        Barostat constant τ_P² B in eV/Å³ · fs² (a float or one per system), or ``None``: no barostat.
    mask
        Which strain components may change: ``None`` (all), 3 axes or a 3×3 array.
    fraction_traceless
        Share of the traceless part of the force on η kept (0: the shape is fixed).
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    Cells must be upper or lower triangular (ValueError naming the system
    otherwise). On entering, a system's mean momentum is removed (ASE does it
    on construction) and its barostat constant uses its volume then. Frozen
    atoms are not supported (as the scaled positions run free of them).
    """

    stochastic = False
    ttime = PerSystemParameter("fs", positive=True)
    pfactor = PerSystemParameter("eV/Å³·fs²", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        externalstress: Any = 0.0,
        ttime: ParameterValue | None = None,
        pfactor: ParameterValue | None = None,
        mask: Any = None,
        fraction_traceless: float = 1.0,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        if pfactor is not None:
            require_stress(model)
        super().__init__(model, dt, temperature, None, n_steps, hooks, convergence_hook, **options)
        self.request_property("stress")
        self.externalstress = stress_tensor(externalstress)
        self.thermostatted, self.barostatted = ttime is not None, pfactor is not None
        self.ttime = 1.0 if ttime is None else ttime
        self.pfactor = 1.0 if pfactor is None else pfactor
        self.mask = strain_mask(mask)
        self.fraction_traceless = float(fraction_traceless)
        self.state_fields = (*_SYSTEM_FIELDS, *_ATOM_FIELDS, "cell")
        self._entering = True

    # ------------------------------------------------------------------ set-up
    def init_state(self, batch: Batch) -> None:
        super().init_state(batch)
        B, N = batch.num_graphs, batch.num_nodes
        for name, shape in _SYSTEM_FIELDS.items():
            if name not in batch.field_names():
                zeros = torch.zeros((B, *shape), dtype=batch.dtype, device=batch.device)
                batch.add_field(name, zeros, Scope.SYSTEM)
        for name in _ATOM_FIELDS:
            if name not in batch.field_names():
                batch.add_field(name, torch.zeros((N, 3), dtype=batch.dtype, device=batch.device), Scope.ATOM)

    def prepare(self, batch: Batch) -> None:
        counts = torch.as_tensor(batch.counts, dtype=batch.dtype, device=batch.device)
        kT = self.per_system("temperature", batch, kB)
        ttime = self.per_system("ttime", batch, fs)
        self._tfact = 2.0 / (3 * counts * kT * ttime * ttime) if self.thermostatted else torch.zeros_like(kT)
        self._desired = 1.5 * (counts - 1) * kT
        self._counts = counts
        external = self.externalstress.to(dtype=batch.dtype, device=batch.device)
        if external.dim() == 2 and external.shape[0] != batch.num_graphs:
            raise ValueError(f"externalstress has {external.shape[0]} rows for {batch.num_graphs} systems")
        self._external = external.expand(batch.num_graphs, 6)
        self._mask = self.mask.to(dtype=batch.dtype, device=batch.device)

    def enter(self, batch: Batch, systems: torch.Tensor) -> None:
        super().enter(batch, systems)
        batch.npt_ready = torch.where(systems, torch.zeros_like(batch.npt_ready), batch.npt_ready)
        self._entering = True

    def _voigt_stress(self, batch: Batch) -> torch.Tensor:
        """``[B, 6]`` ASE's ``get_stress(include_ideal_gas=True)``."""
        kinetic = cell_ops.kinetic_tensor(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        return melchionna.voigt(
            cell_ops.stress_with_ideal_gas(batch.stress, kinetic, cell_ops.volume(batch.cell))
        )

    def _strain_change(self, batch: Batch, delta: float) -> torch.Tensor:
        if not self.barostatted:
            return torch.zeros_like(batch.cell)
        return melchionna.strain_rate_change(
            self._voigt_stress(batch), self._external, batch.npt_pfact, batch.cell, self._mask,
            melchionna.is_upper(batch.cell), self.fraction_traceless, delta,
        )  # fmt: skip

    def start(self, batch: Batch) -> None:
        """ASE's ``initialize`` for the systems not yet started (a backward step from the current state)."""
        self.refresh(batch)
        waiting = batch.npt_ready == 0
        dt, index, B = self.dt_internal, batch.batch_idx, batch.num_graphs
        per_atom, per_cell = segment_broadcast(waiting, index).unsqueeze(1), waiting.view(-1, 1, 1)
        cell = batch.cell
        upper = melchionna.is_upper(cell)
        lower = melchionna.is_upper(cell.transpose(-1, -2))
        if not bool((upper | lower | ~waiting).all()):
            bad = int(torch.nonzero(~(upper | lower) & waiting)[0, 0])
            raise ValueError(
                f"system {bad}: cell: NPT needs an upper or lower triangular cell, got {cell[bad]}"
            )
        velocities = berendsen.remove_mean_momentum(batch.velocities, batch.masses, index, self._counts)
        batch.velocities = torch.where(per_atom, velocities, batch.velocities)
        pfact = 1.0 / (self.per_system("pfactor", batch, fs * fs) * torch.linalg.det(cell))
        batch.npt_pfact = torch.where(
            waiting, pfact if self.barostatted else torch.zeros_like(pfact), batch.npt_pfact
        )
        q = (
            torch.einsum("nj,njk->nk", batch.positions, segment_broadcast(torch.linalg.inv(cell), index))
            - 0.5
        )
        h_past = cell - dt * (cell @ batch.npt_eta)
        eta_past = batch.npt_eta - self._strain_change(batch, dt)
        kinetic = kinetic_energy(batch.velocities, batch.masses, index, B)
        zeta_past = batch.npt_zeta - dt * self._tfact * (kinetic - self._desired)
        q_past, q_future = self._backward(batch, q)
        batch.npt_q = torch.where(per_atom, q, batch.npt_q)
        batch.npt_q_past = torch.where(per_atom, q_past, batch.npt_q_past)
        batch.npt_q_future = torch.where(per_atom, q_future, batch.npt_q_future)
        batch.npt_h_past = torch.where(per_cell, h_past, batch.npt_h_past)
        batch.npt_eta_past = torch.where(per_cell, eta_past, batch.npt_eta_past)
        batch.npt_zeta_past = torch.where(waiting, zeta_past, batch.npt_zeta_past)
        batch.npt_ready = torch.ones_like(batch.npt_ready)
        self._entering = False

    def _backward(self, batch: Batch, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ASE's ``_calculate_q_past_and_future``: two passes, the second kept where the first's is hot."""
        dt, index, cell, masses = self.dt_internal, batch.batch_idx, batch.cell, batch.masses
        inverse = segment_broadcast(torch.linalg.inv(cell), index)
        v0 = batch.velocities
        velocities, passes, done = v0, [], None
        for _ in range(2):
            q_past = q - dt * torch.einsum("nj,njk->nk", velocities, inverse)
            q_future = melchionna.future_scaled_positions(
                q, q_past, batch.forces, masses, cell, batch.npt_eta, batch.npt_zeta, index, dt
            )
            passes.append((q_past, q_future))
            velocities = melchionna.scaled_velocities(q_future, q_past, cell, index, dt)
            mean_energy = kinetic_energy(velocities, masses, index, batch.num_graphs) / self._counts
            velocities = (v0 - velocities) + v0
            if done is None:
                done = segment_broadcast(mean_energy < melchionna.STARTED, index).unsqueeze(1)
        assert done is not None
        (first_past, first_future), (second_past, second_future) = passes
        return torch.where(done, first_past, second_past), torch.where(done, first_future, second_future)

    # ------------------------------------------------------------------ the step
    def pre_update(self, batch: Batch) -> None:
        ensure_stress(self, batch)
        if self._entering:
            self.start(batch)
        self.refresh(batch)
        dt, index = self.dt_internal, batch.batch_idx
        cell, eta = batch.cell, batch.npt_eta
        h_future = batch.npt_h_past + 2 * dt * (cell @ eta)
        eta_future = batch.npt_eta_past + self._strain_change(batch, 2 * dt)
        kinetic = kinetic_energy(batch.velocities, batch.masses, index, batch.num_graphs)
        zeta_future = batch.npt_zeta_past + 2 * dt * self._tfact * (kinetic - self._desired)
        batch.npt_h_past, batch.cell = cell, h_future
        batch.npt_q_past, batch.npt_q = batch.npt_q, batch.npt_q_future
        positions = torch.einsum("nj,njk->nk", batch.npt_q + 0.5, segment_broadcast(h_future, index))
        batch.positions = positions
        batch.npt_eta_past, batch.npt_eta = eta, eta_future
        batch.npt_zeta_past, batch.npt_zeta = batch.npt_zeta, zeta_future
        batch.npt_zeta_integrated = batch.npt_zeta_integrated + dt * zeta_future

    def post_update(self, batch: Batch) -> None:
        dt, index = self.dt_internal, batch.batch_idx
        batch.npt_q_future = melchionna.future_scaled_positions(
            batch.npt_q, batch.npt_q_past, batch.forces, batch.masses, batch.cell, batch.npt_eta,
            batch.npt_zeta, index, dt,
        )  # fmt: skip
        batch.velocities = melchionna.scaled_velocities(
            batch.npt_q_future, batch.npt_q_past, batch.cell, index, dt
        )
