"""ASE's random numbers on the device: the same draws, in the same order, as ASE's classes make.

ASE's thermostats take ``rng`` (``numpy.random`` by default) and draw per
step from it. :func:`draw_per_system` makes those draws for every system, in
system order (one generator per system, or one shared), and :func:`to_device`
moves them to the batch's device without waiting for it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.data import Batch

__all__ = ["check_rng", "draw_per_system", "to_device"]


def check_rng(rng: Any, count: int, device: torch.device) -> None:
    """A list of generators needs one per system; a ``torch.Generator`` must live on the batch's device."""
    if isinstance(rng, list | tuple) and len(rng) != count:
        raise ValueError(f"rng: {len(rng)} generators for {count} systems")
    if isinstance(rng, torch.Generator) and rng.device.type != device.type:
        raise ValueError(f"rng is a torch.Generator on {rng.device}, the systems are on {device}")


def to_device(values: np.ndarray, batch: Batch) -> torch.Tensor:
    """Host draws onto the batch's device and dtype (pinned and non-blocking on CUDA: no sync)."""
    tensor = torch.from_numpy(np.ascontiguousarray(values)).to(batch.dtype)
    if batch.device.type == "cuda":
        return tensor.pin_memory().to(batch.device, non_blocking=True)
    return tensor.to(batch.device)


def draw_per_system(
    rng: Any, batch: Batch, draw: Callable[[Any, int], Sequence[np.ndarray]]
) -> list[torch.Tensor]:
    """``draw(generator, n_atoms)`` for system 0, 1, ...; each returned array joined over systems.

    ``rng`` is one generator (shared, drawn from system after system) or a
    list with one per system. Returns the joined arrays on the batch's device.
    """
    generators = rng if isinstance(rng, list | tuple) else [rng] * batch.num_graphs
    parts = [draw(generator, int(n)) for generator, n in zip(generators, batch.counts, strict=True)]
    return [to_device(np.concatenate(column), batch) for column in zip(*parts, strict=True)]
