"""Pure tensor functions (torch only): segment reductions, observables and the integrators' moves."""

from __future__ import annotations

from nvalchemi_ase.ops import vml
from nvalchemi_ase.ops.segment import (
    segment_broadcast,
    segment_max,
    segment_min,
    segment_sum,
    segment_weighted_mean,
    xyz_sum,
)

vml.warm_up()  # before any of our calls: see nvalchemi_ase.ops.vml

__all__ = [
    "segment_broadcast",
    "segment_max",
    "segment_min",
    "segment_sum",
    "segment_weighted_mean",
    "xyz_sum",
]
