"""What every pretrained adapter shares: its module wrapped in an ``AutogradModel`` with our defaults."""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.autograd import AutogradModel

PRETRAINED_SKIN = 1.0
"""Å of neighbour-list skin: MLIP cutoffs are short (5 to 6 Å), so a list lasts many MD steps."""

CPU_EDGES_PER_PASS = 2048
"""Edges per pass of the network on CPU (see ``AutogradModel``'s ``cpu_edges_per_pass``). One thread, 32
copper structures, passes of 1,024 to 8,192 edges in one run: SevenNet fastest at 2,048 (6.2 s against
6.7 s at 4,096 and 7.8 s at 8,192), CHGNet within 7 % over the whole range."""


def pretrained_model(
    module: torch.nn.Module,
    *,
    dtype: torch.dtype = torch.float32,
    skin: float = PRETRAINED_SKIN,
    properties: tuple[str, ...] = (),
    cpu_edges_per_pass: int | None = CPU_EDGES_PER_PASS,
    **options: Any,
) -> AutogradModel:
    """``module`` (an energy module with a ``cutoff``) as a full batched model computing in ``dtype``."""
    module.to(dtype)
    return AutogradModel(
        module,
        dtype=dtype,
        skin=skin,
        properties=properties,
        cpu_edges_per_pass=cpu_edges_per_pass,
        **options,
    )
