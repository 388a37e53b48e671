"""What the engine thermostats share: per-system parameters, the noise source, degrees of freedom.

A parameter such as ``temperature`` is a float or one value per system. It
is validated when assigned (in the constructor, or later, as ASE's
``set_temperature`` does) and turned into ``[B]`` device tensors by the
engine's :meth:`Thermostat.prepare`, once per batch and again after a
parameter changed; never in the step path.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from nvalchemi_ase.data import AtomCategory, Batch, Scope
from nvalchemi_ase.dynamics.base import BaseDynamics
from nvalchemi_ase.dynamics.noise import COUNTER_FIELD, Draw, NoiseSource, noise_source
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops.segment import segment_broadcast, segment_sum

ParameterValue = float | torch.Tensor | Iterable[float]
"""A float, or one value per system (a ``[B]`` tensor or a sequence)."""


class PerSystemParameter:
    """A validated engine parameter: a float or one value per system (kept as float64 on the host).

    Parameters
    ----------
    unit
        The unit, named in error messages.
    positive
        Require values > 0 (else >= 0).
    signed
        Allow any finite value (a pressure); ``positive`` is then ignored.
    maximum
        Largest allowed value (inclusive), or ``None``.
    per_atom
        Also accept one value per atom (``[N]``, all systems' atoms in batch order).
    """

    def __init__(
        self,
        unit: str,
        *,
        positive: bool = False,
        signed: bool = False,
        maximum: float | None = None,
        per_atom: bool = False,
    ) -> None:
        self.unit = unit
        self.positive = positive
        self.signed = signed
        self.maximum = maximum
        self.per_atom = per_atom
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, engine: Any, owner: type | None = None) -> Any:
        if engine is None:
            return self
        return engine.__dict__[self.name]

    def __set__(self, engine: Any, value: ParameterValue) -> None:
        try:
            tensor = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{self.name} must be a float or one per system, got {value!r}") from error
        if tensor.dim() > 1 or tensor.numel() == 0:
            each = "one per system or atom" if self.per_atom else "one per system"
            raise ValueError(
                f"{self.name} has shape {tuple(tensor.shape)}: give a float or a 1-D sequence, {each}"
            )
        low_ok = (tensor > 0) if self.positive else (tensor >= 0)
        if self.signed:
            low_ok = torch.ones_like(low_ok)
        high_ok = tensor <= (math.inf if self.maximum is None else self.maximum)
        if not (torch.isfinite(tensor) & low_ok & high_ok).all():
            bound = "positive" if self.positive else "non-negative"
            bound = "real" if self.signed else bound
            if self.maximum is not None:
                bound += f" and at most {self.maximum}"
            shown = (
                tensor.item() if tensor.dim() == 0 else tensor[~(torch.isfinite(tensor) & low_ok & high_ok)]
            )
            raise ValueError(f"{self.name} must be finite and {bound} ({self.unit}), got {shown}")
        engine.__dict__[self.name] = tensor
        engine._stale = True


class Thermostat(BaseDynamics):
    """Base of the engine thermostats: a target temperature, the noise source, ``prepare``.

    Parameters
    ----------
    model, dt, n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics` (``dt`` in fs).
    temperature
        Target temperature in K: a float or one per system.
    seed
        Seed of the default noise source, :class:`~nvalchemi_ase.dynamics.noise.CounterNoise`
        (``None``: a random seed). Deterministic thermostats ignore it.
    noise
        Another :class:`~nvalchemi_ase.dynamics.noise.NoiseSource` (e.g.
        :class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` for ASE's streams); overrides ``seed``.
    """

    temperature = PerSystemParameter("K")
    stochastic = True
    """Whether ``step`` draws random numbers (from :attr:`noise`)."""

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        seed: int | None = None,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        *,
        noise: NoiseSource | None = None,
        **options: Any,
    ) -> None:
        super().__init__(
            model, dt, n_steps=n_steps, hooks=hooks, convergence_hook=convergence_hook, **options
        )
        self.temperature = temperature
        self.seed = seed
        self.noise: NoiseSource = noise_source(seed, noise)
        """Where this engine's random numbers come from."""
        self.fixed_degrees_of_freedom: Any = None
        """``[B]`` host array replacing :meth:`degrees_of_freedom`'s count (look-alikes: ASE's), or None."""
        self._dof_tensor: torch.Tensor | None = None
        self._stale = True
        self._prepared_dt = self.dt

    # ------------------------------------------------------------------ overridables
    def prepare(self, batch: Batch) -> None:
        """Turn the parameters into device tensors for ``batch`` (called by ``init_state``)."""

    def degrees_of_freedom(self, batch: Batch) -> torch.Tensor:
        """``[B]`` degrees of freedom per system: 3 × the atoms not frozen (ASE's with ``FixAtoms``).

        :attr:`fixed_degrees_of_freedom`, when set, replaces the count (ASE's
        ``get_number_of_degrees_of_freedom`` removes more for other constraints).
        """
        if self.fixed_degrees_of_freedom is not None:
            cached = self._dof_tensor
            if cached is None or cached.device != batch.device or cached.dtype != batch.dtype:
                cached = torch.as_tensor(self.fixed_degrees_of_freedom, dtype=batch.dtype).to(batch.device)
                self._dof_tensor = cached
            return cached
        moving = (batch.atom_categories != AtomCategory.FROZEN.value).to(batch.dtype)
        return 3.0 * segment_sum(moving, batch.batch_idx, batch.num_graphs)

    # ------------------------------------------------------------------ helpers
    def init_state(self, batch: Batch) -> None:
        if self.stochastic and COUNTER_FIELD not in batch.field_names():
            zeros = torch.zeros(batch.num_graphs, dtype=torch.long, device=batch.device)
            batch.add_field(COUNTER_FIELD, zeros, Scope.SYSTEM)
        self.prepare(batch)
        self._stale, self._prepared_dt = False, self.dt

    def refresh(self, batch: Batch) -> None:
        """Re-run :meth:`prepare` if a parameter or ``dt`` was assigned since (a host-side check, no sync)."""
        if self._stale or self.dt != self._prepared_dt:
            self.prepare(batch)
            self._stale, self._prepared_dt = False, self.dt

    def per_system(self, name: str, batch: Batch, scale: float = 1.0) -> torch.Tensor:
        """``[B]`` values of parameter ``name`` (times ``scale``) on the batch's device and dtype."""
        value: torch.Tensor = getattr(self, name)
        if value.dim() > 0 and value.shape != (batch.num_graphs,):
            raise ValueError(f"{name} has {value.shape[0]} values for {batch.num_graphs} systems")
        value = (value * scale).to(device=batch.device, dtype=batch.dtype)
        return value.expand(batch.num_graphs).contiguous()

    def per_atom(self, name: str, batch: Batch, scale: float = 1.0) -> torch.Tensor:
        """``[N]`` values of parameter ``name`` (a float, ``[B]`` or ``[N]``; times ``scale``)."""
        value: torch.Tensor = getattr(self, name)
        if value.shape == (batch.num_nodes,):  # with B == N, the same values either way
            return (value * scale).to(device=batch.device, dtype=batch.dtype)
        if value.dim() > 0 and value.shape != (batch.num_graphs,):
            raise ValueError(
                f"{name} has {value.shape[0]} values for {batch.num_graphs} systems and "
                f"{batch.num_nodes} atoms: give a float, one value per system ([{batch.num_graphs}]) "
                f"or one per atom ([{batch.num_nodes}])"
            )
        return segment_broadcast(self.per_system(name, batch, scale), batch.batch_idx)

    def draw(self, batch: Batch, *draws: Draw) -> list[torch.Tensor]:
        """This step's random numbers from :attr:`noise`, one tensor per :class:`Draw`, in order."""
        return self.noise.draw(batch, draws)
