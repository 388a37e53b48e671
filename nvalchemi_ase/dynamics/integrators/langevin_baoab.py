"""Langevin BAOAB (NVT, fixed cell) in ASE's scheme (see :mod:`nvalchemi_ase.ops.baoab`), batched.

Per-system temperature and relaxation time; the noise comes from the engine's
noise source. ASE's variable-cell (NPH/NPT) part is not included.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.noise import Draw
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import baoab, segment_broadcast
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import fs, kB


class LangevinBAOAB(Thermostat):
    """Langevin dynamics split as B-A-O-A-B, ``ase.md.langevinbaoab.LangevinBAOAB``'s NVT algorithm.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float, or one per system (``[B]`` tensor or sequence).
    T_tau
        Velocity relaxation time 1/γ in fs: a float or one per system
        (``None``: 50 dt, ASE's default).
    seed, noise
        As :class:`~nvalchemi_ase.dynamics.integrators._thermostat.Thermostat`.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    ASE draws ``rng.normal(size=(n, 3))`` once per step and system, in the O
    move; :class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` with one
    generator per system reproduces ASE's run of each system. The step uses
    the forces of the previous compute (the run primes them), as ASE uses
    those computed at construction.
    """

    T_tau = PerSystemParameter("fs", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        T_tau: ParameterValue | None = None,
        seed: int | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dt, temperature, seed, n_steps, hooks, convergence_hook, **options)
        self.T_tau = 50.0 * self.dt if T_tau is None else T_tau

    def prepare(self, batch: Batch) -> None:
        kT = self.per_system("temperature", batch, kB)
        gamma = 1.0 / self.per_system("T_tau", batch, fs)
        decay, prefactor = baoab.ornstein_uhlenbeck_coefficients(self.dt_internal, kT, gamma)
        self._decay = segment_broadcast(decay, batch.batch_idx).unsqueeze(1)
        self._prefactor = segment_broadcast(prefactor, batch.batch_idx).unsqueeze(1)
        self._sqrt_masses = torch.sqrt(batch.masses).unsqueeze(1)

    def draw_noise(self, batch: Batch) -> torch.Tensor:
        """This step's ξ, ``[N, 3]`` standard normals."""
        (xi,) = self.draw(batch, Draw("normal", per_atom=True, shape=(3,)))
        return xi

    def pre_update(self, batch: Batch) -> None:
        self.refresh(batch)
        half = 0.5 * self.dt_internal
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
        positions = drift(batch.positions, velocities, half)
        velocities = baoab.ornstein_uhlenbeck(
            velocities, self._sqrt_masses, self._decay, self._prefactor, self.draw_noise(batch)
        )
        batch.positions = drift(positions, velocities, half)
        batch.velocities = velocities

    def post_update(self, batch: Batch) -> None:
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
