"""Device → host transfer: several tensors in one copy (one sync)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["to_host"]


def to_host(tensors: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Copy several device tensors to the host in one transfer (one sync); float64 numpy arrays."""
    flat = torch.cat([t.detach().reshape(-1).to(torch.float64) for t in tensors])
    host = flat.cpu().numpy()
    parts, start = [], 0
    for t in tensors:
        parts.append(host[start : start + t.numel()].reshape(tuple(t.shape)))
        start += t.numel()
    return parts
