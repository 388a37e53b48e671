"""``BiasedPotentialHook``: add a user bias energy and its forces to the model's.

The bias is a function ``bias_fn(batch) -> (energy [B, 1], forces [N, 3])``
(eV, eV/Å). Fired at ``AFTER_COMPUTE`` it turns the model's potential ``E``
into ``E + E_bias`` for everything that follows in the step (the velocity
update, convergence, observers): restraints, umbrella sampling, metadynamics
and the like. The bias is added as given, not differentiated: its forces must
be ``-dE_bias/dr`` for the dynamics to conserve ``E + E_bias``.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from nvalchemi_ase.hooks.stages import DynamicsStage

if TYPE_CHECKING:
    from nvalchemi_ase.data import Batch
    from nvalchemi_ase.hooks.protocol import HookContext

BiasFunction = Callable[["Batch"], tuple[torch.Tensor, torch.Tensor]]


class BiasedPotentialHook:
    """Add ``bias_fn(batch)``'s energy and forces to ``batch.energy`` and ``batch.forces``.

    Parameters
    ----------
    bias_fn
        ``bias_fn(batch) -> (energy, forces)`` with ``energy`` ``[B, 1]`` in eV
        and ``forces`` ``[N, 3]`` in eV/Å, on the batch's device.
    stage
        Where it fires; default ``DynamicsStage.AFTER_COMPUTE``, the stage where it belongs.
    frequency
        Fires when ``step_count % frequency == 0`` (a bias normally fires every step).

    Raises
    ------
    TypeError
        ``bias_fn`` is not callable.
    ValueError
        ``frequency`` is not an integer ``>= 1``; when fired, the bias has the
        wrong shapes or the batch has no energy and forces yet.
    """

    def __init__(
        self,
        bias_fn: BiasFunction,
        stage: enum.Enum = DynamicsStage.AFTER_COMPUTE,
        frequency: int = 1,
    ) -> None:
        if not callable(bias_fn):
            raise TypeError(f"BiasedPotentialHook: bias_fn must be callable, got {bias_fn!r}")
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"BiasedPotentialHook: frequency must be an integer >= 1, got {frequency!r}")
        self.bias_fn = bias_fn
        self.stage: enum.Enum = stage
        self.frequency = frequency

    def __call__(self, ctx: HookContext, stage: enum.Enum) -> None:
        """Add the bias to the batch's energy and forces (shape checks only: no host sync)."""
        batch = ctx.batch
        if batch.energy is None or batch.forces is None:
            raise ValueError(
                f"BiasedPotentialHook fired at {stage!r} before energy and forces were computed; "
                "register it at AFTER_COMPUTE"
            )
        energy, forces = self.bias_fn(batch)
        _check_shape("energy", energy, (batch.num_graphs, 1))
        _check_shape("forces", forces, (batch.num_nodes, 3))
        batch.energy = batch.energy + energy.detach()
        batch.forces = batch.forces + forces.detach()

    def __repr__(self) -> str:
        name = getattr(self.bias_fn, "__name__", repr(self.bias_fn))
        return f"BiasedPotentialHook(bias_fn={name}, stage={self.stage!r}, frequency={self.frequency})"


def _check_shape(name: str, value: object, expected: tuple[int, int]) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"BiasedPotentialHook: bias_fn returned {type(value).__name__} for {name}")
    if tuple(value.shape) != expected:
        raise ValueError(
            f"BiasedPotentialHook: bias {name} has shape {tuple(value.shape)}, expected {expected}"
        )
