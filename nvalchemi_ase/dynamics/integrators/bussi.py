"""Bussi stochastic velocity rescaling in ASE's scheme (see :mod:`nvalchemi_ase.ops.bussi`), batched.

Each system draws its own rescaling factor from its own kinetic energy,
target temperature and coupling time, then takes a velocity-Verlet step. The
random numbers come from the engine's noise source.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.noise import Draw
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import bussi, segment_broadcast
from nvalchemi_ase.ops.thermo import kinetic_energy
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import fs, kB


class Bussi(Thermostat):
    """Canonical sampling through velocity rescaling, ``ase.md.bussi.Bussi``'s algorithm.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float, or one per system (``[B]`` tensor or sequence).
    taut
        Coupling time τ_T in fs: a float or one per system.
    seed, noise
        As :class:`~nvalchemi_ase.dynamics.integrators._thermostat.Thermostat`.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    The number of degrees of freedom N_f comes from :meth:`degrees_of_freedom`
    (3 per atom not frozen, ASE's ``get_number_of_degrees_of_freedom`` with
    ``FixAtoms``). Per system and step ASE draws ``rng.standard_normal()``,
    then ``rng.standard_gamma((N_f - 1) / 2)``, the draws asked of the noise
    source; :class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` with one
    generator per system reproduces ASE's run of each system. A system with zero kinetic energy is left
    unscaled (ASE refuses to start one); give it velocities first, e.g. with
    ``initial_temperature``.

    The energy the thermostat put into each system so far (ASE's
    ``transferred_energy``, eV) is the per-system batch field
    ``bussi_transferred_energy``; E_total − it is conserved.
    """

    state_fields = ("bussi_transferred_energy",)
    taut = PerSystemParameter("fs", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        taut: ParameterValue,
        seed: int | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dt, temperature, seed, n_steps, hooks, convergence_hook, **options)
        self.taut = taut

    def init_state(self, batch: Batch) -> None:
        super().init_state(batch)
        if "bussi_transferred_energy" not in batch.field_names():
            zeros = torch.zeros(batch.num_graphs, dtype=batch.dtype, device=batch.device)
            batch.add_field("bussi_transferred_energy", zeros, Scope.SYSTEM)

    def prepare(self, batch: Batch) -> None:
        self._kT = self.per_system("temperature", batch, kB)
        self._decay = torch.exp(-self.dt_internal / self.per_system("taut", batch, fs))

    def draw_noise(self, batch: Batch, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's R₁ (standard normal) and Γ(``shape``) draw, ``[B]`` each (R₁ drawn first).

        ``shape`` is ``[B]`` (N_f − 1)/2; the χ² variate is twice the Γ draw.
        """
        host = self.fixed_degrees_of_freedom
        gamma = Draw(
            "standard_gamma", per_atom=False, argument=shape.clamp(min=0.0),
            host_argument=None if host is None else (np.asarray(host, dtype=float) - 1.0).clip(0.0) / 2.0,
        )  # fmt: skip
        normal, chi_half = self.draw(batch, Draw("standard_normal", per_atom=False), gamma)
        return normal, chi_half

    def scale_velocities(self, batch: Batch) -> torch.Tensor:
        """Bussi's rescaling of ``batch.velocities``; returns the ``[B]`` factors α applied."""
        self.refresh(batch)
        index = batch.batch_idx
        kinetic = kinetic_energy(batch.velocities, batch.masses, index, batch.num_graphs)
        dof = self.degrees_of_freedom(batch)
        shape = bussi.gamma_shape(dof)
        normal, gamma = self.draw_noise(batch, shape)
        chi_square = bussi.chi_square(gamma, shape)
        alpha = bussi.rescaling_factor(kinetic, self._kT, dof, self._decay, normal, chi_square)
        batch.velocities = batch.velocities * segment_broadcast(alpha, index).unsqueeze(1)
        batch.bussi_transferred_energy = batch.bussi_transferred_energy + bussi.transferred_energy(
            alpha, kinetic
        )
        return alpha

    def pre_update(self, batch: Batch) -> None:
        self.scale_velocities(batch)
        dt = self.dt_internal
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        batch.positions = drift(batch.positions, velocities, dt)
        batch.velocities = velocities

    def post_update(self, batch: Batch) -> None:
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
