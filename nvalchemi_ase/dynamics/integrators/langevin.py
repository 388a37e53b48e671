"""NVT Langevin dynamics in ASE's scheme (see :mod:`nvalchemi_ase.ops.langevin`).

Temperature and friction per system or per atom; the noise comes from the engine's
noise source (counter-based torch noise by default; the ASE look-alike plugs in
ASE's numpy streams).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.noise import Draw
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import langevin
from nvalchemi_ase.units import fs, kB

_NORMAL = Draw("standard_normal", per_atom=True, shape=(3,))


class NVTLangevin(Thermostat):
    """Langevin thermostat, ASE's integrator (Vanden-Eijnden & Ciccotti 2006).

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float, one per system (``[B]`` tensor or
        sequence) or one per atom (``[N]``, all systems' atoms in batch order).
    friction
        Friction γ in 1/fs: a float, one per system (``[B]``) or one per atom (``[N]``).
    seed, noise
        As :class:`~nvalchemi_ase.dynamics.integrators._thermostat.Thermostat`: per step
        and system, ξ then η, ``standard_normal((n, 3))`` each (ASE's order).
    fixcm
        Remove the noise's centre-of-mass motion per system, as ASE's ``fixcm``.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics` (``initial_temperature``, ``velocity_seed``).

    Notes
    -----
    Assigning ``temperature``, ``friction`` or ``dt`` later takes effect at the next step.
    """

    temperature = PerSystemParameter("K", per_atom=True)
    friction = PerSystemParameter("1/fs", per_atom=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        friction: ParameterValue,
        seed: int | None = None,
        fixcm: bool = False,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dt, temperature, seed, n_steps, hooks, convergence_hook, **options)
        self.friction = friction
        self.fixcm = fixcm

    def prepare(self, batch: Batch) -> None:
        """Per-atom coefficients from ``temperature``, ``friction`` and ``dt``.

        Raises
        ------
        ValueError
            When ``temperature`` or ``friction`` is neither a float, ``[B]`` nor ``[N]``.
        """
        kT = self.per_atom("temperature", batch, kB)
        gamma = self.per_atom("friction", batch, 1.0 / fs)
        self._coefficients = langevin.coefficients(self.dt_internal, kT, gamma, batch.masses)
        self._counts = torch.as_tensor(batch.counts, dtype=batch.dtype, device=batch.device)

    def pre_update(self, batch: Batch) -> None:
        self.refresh(batch)
        c1, c2, c3, c4, c5 = self._coefficients
        xi, eta = self.draw(batch, _NORMAL, _NORMAL)
        rnd_vel, rnd_pos = langevin.random_moves(xi, eta, c3, c4, c5)
        if self.fixcm:
            rnd_vel, rnd_pos = langevin.remove_noise_drift(
                rnd_vel, rnd_pos, batch.masses, batch.batch_idx, self._counts
            )
        self._rnd_vel = rnd_vel
        velocities = langevin.velocity_half(batch.velocities, batch.forces, batch.masses, c1, c2, rnd_vel)
        batch.positions, batch.velocities = langevin.position_step(
            batch.positions, velocities, self.dt_internal, rnd_pos
        )

    def post_update(self, batch: Batch) -> None:
        c1, c2, *_ = self._coefficients
        batch.velocities = langevin.velocity_half(
            batch.velocities, batch.forces, batch.masses, c1, c2, self._rnd_vel
        )
