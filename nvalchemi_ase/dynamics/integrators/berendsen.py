"""Berendsen NVT in ASE's scheme (see :mod:`nvalchemi_ase.ops.berendsen`), batched.

Each system's velocities are rescaled towards its own target temperature with
its own coupling time, then advanced by velocity Verlet. Deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import berendsen, segment_broadcast
from nvalchemi_ase.ops.thermo import kinetic_energy, temperature
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import fs


class NVTBerendsen(Thermostat):
    """Berendsen weak-coupling thermostat, ``ase.md.nvtberendsen.NVTBerendsen``'s algorithm.

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
    fixcm
        Subtract each system's mean momentum after the first half kick (ASE's default ``True``).
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    The kinetic temperature uses :meth:`degrees_of_freedom` (3 per atom not
    frozen, as ASE's ``get_temperature`` with ``FixAtoms``). The scale
    factor is clamped to [0.9, 1.1] as in ASE. ``fixcm`` subtracts the plain
    (unweighted) mean momentum over all the system's atoms, as ASE does.
    """

    taut = PerSystemParameter("fs", positive=True)

    stochastic = False

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        taut: ParameterValue,
        fixcm: bool = True,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dt, temperature, None, n_steps, hooks, convergence_hook, **options)
        self.taut = taut
        self.fixcm = bool(fixcm)

    def prepare(self, batch: Batch) -> None:
        self._target = self.per_system("temperature", batch)
        self._taut = self.per_system("taut", batch, fs)
        self._counts = torch.as_tensor(batch.counts, dtype=batch.dtype, device=batch.device)

    def scale_velocities(self, batch: Batch) -> torch.Tensor:
        """Berendsen's rescaling of ``batch.velocities``; returns the ``[B]`` factors applied."""
        self.refresh(batch)
        index = batch.batch_idx
        kinetic = kinetic_energy(batch.velocities, batch.masses, index, batch.num_graphs)
        current = temperature(kinetic, self.degrees_of_freedom(batch))
        scale = berendsen.velocity_scale(current, self._target, self.dt_internal, self._taut)
        batch.velocities = batch.velocities * segment_broadcast(scale, index).unsqueeze(1)
        return scale

    def pre_update(self, batch: Batch) -> None:
        self.scale_velocities(batch)
        self.kick_and_drift(batch)

    def kick_and_drift(self, batch: Batch) -> None:
        """The first half of the velocity-Verlet step (with ``fixcm``, the mean momentum removed)."""
        dt = self.dt_internal
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, dt)
        if self.fixcm:
            velocities = berendsen.remove_mean_momentum(
                velocities, batch.masses, batch.batch_idx, self._counts
            )
        batch.positions = drift(batch.positions, velocities, dt)
        batch.velocities = velocities

    def post_update(self, batch: Batch) -> None:
        batch.velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
