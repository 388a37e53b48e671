"""Andersen thermostat in ASE's scheme (see :mod:`nvalchemi_ase.ops.andersen`), batched.

Per-system temperature and collision probability; the uniforms come from the
engine's noise source.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter, Thermostat
from nvalchemi_ase.dynamics.noise import Draw
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import andersen
from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum
from nvalchemi_ase.ops.velocities import remove_drift
from nvalchemi_ase.ops.verlet import drift, half_kick
from nvalchemi_ase.units import kB

_PER_SYSTEM = Draw("random", per_atom=False, shape=(3,))
_PER_ATOM = Draw("random", per_atom=True, shape=(3,))


class Andersen(Thermostat):
    """Velocity Verlet with Andersen's random collisions, ``ase.md.andersen.Andersen``'s algorithm.

    Parameters
    ----------
    model
        Batched model returning forces.
    dt
        Time step in fs.
    temperature
        Target temperature in K: a float, or one per system (``[B]`` tensor or sequence).
    andersen_prob
        Probability per step that a velocity component is redrawn, in [0, 1]: a float or one per system.
    fixcm
        Keep each system's centre of mass where it is and at rest (ASE's default ``True``).
    seed, noise
        As :class:`~nvalchemi_ase.dynamics.integrators._thermostat.Thermostat`.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    The random numbers, per system and in the order ASE draws them in one
    step: with ``fixcm``, ``rng.random(3)`` twice (Box–Muller for the random
    centre-of-mass velocity); then ``rng.random((n, 3))`` twice (Box–Muller
    for the Maxwell–Boltzmann components) and once more (the collision
    chances): two calls to the noise source per step.
    :class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` with one generator per
    system reproduces ASE's run of each system.
    """

    andersen_prob = PerSystemParameter("probability per component and step", maximum=1.0)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        andersen_prob: ParameterValue,
        fixcm: bool = True,
        seed: int | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(model, dt, temperature, seed, n_steps, hooks, convergence_hook, **options)
        self.andersen_prob = andersen_prob
        self.fixcm = bool(fixcm)

    def prepare(self, batch: Batch) -> None:
        kT = self.per_system("temperature", batch, kB)
        total_mass = segment_sum(batch.masses, batch.batch_idx, batch.num_graphs)
        self._com_width = torch.sqrt(kT / total_mass).unsqueeze(1)
        self._width = torch.sqrt(segment_broadcast(kT, batch.batch_idx) / batch.masses).unsqueeze(1)
        self._probability = segment_broadcast(
            self.per_system("andersen_prob", batch), batch.batch_idx
        ).unsqueeze(1)

    def draw_center_of_mass_uniforms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's x and y for the random centre-of-mass velocity, ``[B, 3]`` uniforms in [0, 1) each.

        Called first, and only with ``fixcm``; ASE draws ``rng.random(3)`` for x, then for y.
        """
        x, y = self.draw(batch, _PER_SYSTEM, _PER_SYSTEM)
        return x, y

    def draw_collision_uniforms(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """This step's x, y (Box–Muller) and collision chances, ``[N, 3]`` uniforms in [0, 1) each.

        ASE draws ``rng.random((n, 3))`` for x, then y, then the chances.
        """
        x, y, chance = self.draw(batch, _PER_ATOM, _PER_ATOM, _PER_ATOM)
        return x, y, chance

    def keep_held(self, batch: Batch, positions: torch.Tensor, moved: torch.Tensor) -> torch.Tensor:
        """With ``fixcm``: the components :attr:`constraints` holds keep ``positions``.

        Called on the drifted positions before and after the centre-of-mass
        restore, as ASE's ``set_positions`` and ``set_center_of_mass`` apply
        the constraints (``FixAtoms`` and ``FixCartesian``; nothing without
        a constraint component).
        """
        if self.constraints is None:
            return moved
        return torch.where(self.constraints.held_components(batch), positions, moved)

    def pre_update(self, batch: Batch) -> None:
        self.refresh(batch)
        dt, index, count = self.dt_internal, batch.batch_idx, batch.num_graphs
        velocities = batch.velocities
        if self.fixcm:
            com_velocity = andersen.box_muller(self._com_width, *self.draw_center_of_mass_uniforms(batch))
            velocities = velocities + segment_broadcast(com_velocity, index)
        velocities = half_kick(velocities, batch.forces, batch.masses, dt)
        x, y, chance = self.draw_collision_uniforms(batch)
        random_velocities = andersen.box_muller(self._width, x, y)
        velocities = andersen.collide(velocities, random_velocities, chance, self._probability)
        positions = batch.positions
        if self.fixcm:
            old_center = andersen.center_of_mass(positions, batch.masses, index, count)
            velocities = remove_drift(velocities, batch.masses, index, count)
        moved = drift(positions, velocities, dt)
        if self.fixcm:  # ASE: set_positions (constraints), then set_center_of_mass (constraints again)
            moved = self.keep_held(batch, positions, moved)
            moved = andersen.move_center_of_mass(moved, old_center, batch.masses, index)
            moved = self.keep_held(batch, positions, moved)
        batch.positions, batch.velocities = moved, (moved - positions) / dt

    def post_update(self, batch: Batch) -> None:
        velocities = half_kick(batch.velocities, batch.forces, batch.masses, self.dt_internal)
        if self.fixcm:
            velocities = remove_drift(velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        batch.velocities = velocities
