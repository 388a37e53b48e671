"""NVT Langevin dynamics in ASE's scheme (see :mod:`nvalchemi_ase.ops.langevin`).

Temperature and friction per system or per atom; the noise comes from a seeded torch
generator on the batch's device (override :meth:`NVTLangevin.draw_noise` to feed
other random numbers, as the ASE look-alike does to reproduce ASE's stream).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import langevin, segment_broadcast
from nvalchemi_ase.units import fs, kB


class NVTLangevin(BaseDynamics):
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
    seed
        Seed of the torch generator the noise is drawn from (``None``: a random seed).
    fixcm
        Remove the noise's centre-of-mass motion per system, as ASE's ``fixcm``.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics` (``initial_temperature``, ``velocity_seed``).
    """

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: float | torch.Tensor | Iterable[float],
        friction: float | torch.Tensor | Iterable[float],
        seed: int | None = None,
        fixcm: bool = False,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, dt, n_steps=n_steps, hooks=hooks, convergence_hook=convergence_hook, **options
        )
        self.temperature = torch.as_tensor(temperature, dtype=torch.float64)
        self.friction = torch.as_tensor(friction, dtype=torch.float64)
        if (self.temperature < 0).any() or not torch.isfinite(self.temperature).all():
            raise ValueError(f"temperature must be finite and non-negative (K), got {temperature!r}")
        if (self.friction < 0).any() or not torch.isfinite(self.friction).all():
            raise ValueError(f"friction must be finite and non-negative (1/fs), got {friction!r}")
        self.seed = seed
        self.fixcm = fixcm
        self._generator: torch.Generator | None = None

    def init_state(self, batch: Batch) -> None:
        """Check ``temperature``/``friction`` against the batch; per-atom coefficients; seed the noise.

        Raises
        ------
        ValueError
            When ``temperature`` or ``friction`` is neither a float, ``[B]`` nor ``[N]``.
        """
        for name, value in (("temperature", self.temperature), ("friction", self.friction)):
            _check_shape(name, value, batch)
        device, dtype = batch.device, batch.dtype
        kT = _per_atom((self.temperature * kB).to(device=device, dtype=dtype), batch)
        gamma = _per_atom((self.friction / fs).to(device=device, dtype=dtype), batch)
        self._coefficients = langevin.coefficients(self.dt_internal, kT, gamma, batch.masses)
        self._counts = torch.as_tensor(batch.counts, dtype=dtype, device=device)
        if self._generator is None or self._generator.device != device:
            # Seeded once: a refilled batch continues the same random stream.
            self._generator = torch.Generator(device=device)
            if self.seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self.seed)

    def draw_noise(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """This step's ξ and η, ``[N, 3]`` standard normals each (ξ drawn first)."""
        shape = (batch.num_nodes, 3)
        xi = torch.randn(shape, generator=self._generator, dtype=batch.dtype, device=batch.device)
        eta = torch.randn(shape, generator=self._generator, dtype=batch.dtype, device=batch.device)
        return xi, eta

    def pre_update(self, batch: Batch) -> None:
        c1, c2, c3, c4, c5 = self._coefficients
        rnd_vel, rnd_pos = langevin.random_moves(*self.draw_noise(batch), c3, c4, c5)
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


def _check_shape(name: str, value: torch.Tensor, batch: Batch) -> None:
    """Raise ValueError unless ``value`` is a scalar, ``[B]`` or ``[N]``."""
    if value.dim() == 0 or value.shape in ((batch.num_graphs,), (batch.num_nodes,)):
        return
    if value.dim() == 1:
        count = f"{value.shape[0]} values"
    else:
        count = f"shape {tuple(value.shape)}"
    raise ValueError(
        f"{name} has {count} for {batch.num_graphs} systems and {batch.num_nodes} atoms: "
        f"give a float, one value per system ([{batch.num_graphs}]) or one per atom ([{batch.num_nodes}])"
    )


def _per_atom(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """``[N]`` from a scalar, ``[B]`` (broadcast over each system's atoms) or ``[N]`` (as is)."""
    if values.shape == (batch.num_nodes,):  # with B == N, the same values either way
        return values
    return segment_broadcast(values.expand(batch.num_graphs), batch.batch_idx)
