"""A model's bound on the forces it returned (:data:`~nvalchemi_ase.data.fields.FORCES_BOUND`),
kept with the batch that holds those forces, and trusted only while it still holds them."""

from __future__ import annotations

import torch

from nvalchemi_ase.data.batch import Batch
from nvalchemi_ase.data.errors import BatchValidationError


def keep_forces_bound(batch: Batch, bound: torch.Tensor | None) -> None:
    """Keep a model's bound for the forces and energy ``batch`` holds now (an engine does, after
    storing the model's results); None forgets the last one.

    Raises
    ------
    BatchValidationError
        ``bound`` is not a contiguous float64 CPU tensor of shape ``[B]`` (nothing kept changes).
    """
    forces, energy = batch.forces, batch.energy
    if bound is None or forces is None or energy is None:
        batch._forces_bound = None
        return
    if not (
        bound.dtype == torch.float64
        and bound.device.type == "cpu"
        and bound.shape == (batch.num_graphs,)
        and bound.is_contiguous()
    ):
        raise BatchValidationError(
            f"a forces bound is float64, contiguous, on the CPU, of shape ({batch.num_graphs},): "
            f"got {bound.dtype} of shape {tuple(bound.shape)} on {bound.device}",
            field="forces_bound",
        )
    batch._forces_bound = (bound, forces, forces._version, energy, energy._version)


def forces_bound(batch: Batch) -> torch.Tensor | None:
    """The bound :func:`keep_forces_bound` kept while ``batch`` holds the same forces and energy
    tensors, not written in place since; else None (a hook replaced or edited them)."""
    kept: tuple[torch.Tensor, torch.Tensor, int, torch.Tensor, int] | None
    kept = batch.__dict__.get("_forces_bound")
    if kept is None:
        return None
    bound, kept_forces, forces_version, kept_energy, energy_version = kept
    if (
        kept_forces._version != forces_version
        or kept_energy._version != energy_version
        or batch.forces is not kept_forces
        or batch.energy is not kept_energy
    ):
        return None
    return bound


__all__ = ["forces_bound", "keep_forces_bound"]
