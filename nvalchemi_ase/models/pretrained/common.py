"""What every pretrained adapter shares: its module wrapped in an ``AutogradModel`` with our defaults."""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.autograd import AutogradModel

PRETRAINED_SKIN = 1.0
"""Å of neighbour-list skin: MLIP cutoffs are short (5 to 6 Å), so a list lasts many MD steps."""


def pretrained_model(
    module: torch.nn.Module,
    *,
    dtype: torch.dtype = torch.float32,
    skin: float = PRETRAINED_SKIN,
    properties: tuple[str, ...] = (),
    **options: Any,
) -> AutogradModel:
    """``module`` (an energy module with a ``cutoff``) as a full batched model computing in ``dtype``."""
    module.to(dtype)
    return AutogradModel(module, dtype=dtype, skin=skin, properties=properties, **options)
