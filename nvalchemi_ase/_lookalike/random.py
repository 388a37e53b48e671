"""The look-alikes' ``rng=``: turned into the engine's noise source.

ASE's thermostats take ``rng`` (``numpy.random`` by default) and draw per
step from it. :func:`ase_noise` gives the engine a
:class:`~nvalchemi_ase.dynamics.noise.NumpyNoise` over it (one generator, or
one per system: ASE's numbers), or, for a ``torch.Generator``, device noise
(:class:`~nvalchemi_ase.dynamics.noise.CounterNoise` seeded from it).
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.dynamics.noise import CounterNoise, NoiseSource, NumpyNoise

__all__ = ["ase_noise", "check_rng"]


def check_rng(rng: Any, count: int, device: torch.device) -> None:
    """A list of generators needs one per system; a ``torch.Generator`` must live on the batch's device."""
    if isinstance(rng, list | tuple) and len(rng) != count:
        raise ValueError(f"rng: {len(rng)} generators for {count} systems")
    if isinstance(rng, torch.Generator) and rng.device.type != device.type:
        raise ValueError(f"rng is a torch.Generator on {rng.device}, the systems are on {device}")


def ase_noise(rng: Any, count: int, device: torch.device) -> NoiseSource:
    """The noise source for a look-alike's ``rng`` (checked against ``count`` systems on ``device``).

    ``None`` gives device noise with a random seed; a ``torch.Generator``
    device noise seeded by one draw from it (not ASE's numbers); anything
    else numpy draws in ASE's order.
    """
    check_rng(rng, count, device)
    if rng is None:
        return CounterNoise()
    if isinstance(rng, torch.Generator):
        seed = torch.randint(0, 2**62, (1,), generator=rng, device=rng.device)
        return CounterNoise(int(seed))
    return NumpyNoise(rng)
