"""Pure tensor functions (torch only): segment reductions, observables and the integrators' moves."""

from __future__ import annotations

from nvalchemi_ase.ops.segment import (
    segment_broadcast,
    segment_max,
    segment_min,
    segment_sum,
    segment_weighted_mean,
    xyz_sum,
)

__all__ = [
    "segment_broadcast",
    "segment_max",
    "segment_min",
    "segment_sum",
    "segment_weighted_mean",
    "xyz_sum",
]
