"""What ASE's ``NEB.set_positions`` does with the positions an optimizer sets, for a batch of bands.

Between the optimizer's update and the next compute, in ASE's order:

1. ``string`` bands (not under DyNEB's dynamic relaxation, whose
   ``set_positions`` skips it): the images move to equal spacing along the
   spline through the new band (``StringMethod.adjust_positions``);
2. each image's constraints (FixAtoms, FixCartesian, FixCom) act, from the
   image's positions before the step (``image.set_positions``);
3. DyNEB with ``dynamic_relaxation``: images are placed one index after the
   other, and one whose NEB force (evaluated with the images before it
   already placed, and the band aligned first when
   ``remove_rotation_and_translation``) is below ``fmax`` stays where it was.

Each is one batched operation over all bands (the DyNEB placement one per
image index: ASE's order is sequential there).
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.models.band import BandModel
from nvalchemi_ase.ops.neb import image_max_force
from nvalchemi_ase.ops.segment import segment_broadcast

__all__ = ["PlaceImagesHook"]


class PlaceImagesHook:
    """Reparametrisation, image constraints and DyNEB's placement after each optimizer update.

    Parameters
    ----------
    model
        The bands' :class:`~nvalchemi_ase.models.band.BandModel`.
    depth
        The most moving images of any dynamic band (0 when none is dynamic).
    align
        The bands' :class:`~nvalchemi_ase._lookalike.band_alignment.AlignImagesHook`
        (or None): DyNEB's intermediate evaluations align the band first, as ASE's.
    """

    stage = None
    stages = (DynamicsStage.BEFORE_PRE_UPDATE, DynamicsStage.BEFORE_COMPUTE)
    frequency = 1

    def __init__(self, model: BandModel, depth: int, align: Any = None) -> None:
        self.model = model
        self.depth = depth
        self.align = align
        layout = model.layout
        image_of_row = model.images.batch_idx
        self.image_of_row = image_of_row
        self.row_local = segment_broadcast(layout.local, image_of_row)
        self.always = ~segment_broadcast(layout.dynamic, layout.image_band)
        self.fmax = segment_broadcast(layout.dynamic_fmax, layout.image_band)
        aligned = align.bands if align is not None else torch.zeros_like(layout.dynamic)
        self.realign = layout.dynamic & aligned
        self.any_realign = bool(self.realign.any())
        self.constrained = model.held is not None or model.fixcom is not None
        self._before: torch.Tensor | None = None
        self._forces: torch.Tensor | None = None
        self._resting: torch.Tensor | None = None

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        batch = ctx.batch
        if stage == DynamicsStage.BEFORE_PRE_UPDATE:
            self._before, self._forces = batch.positions, batch.forces
            engine = ctx.dynamics
            has_convergence = getattr(engine, "convergence_hook", None) is not None
            self._resting = getattr(engine, "converged", None) if has_convergence else None
            return
        if self._before is None or self._forces is None:  # a compute outside a step: nothing moved
            return
        old, new, forces = self._before, batch.positions, self._forces
        self._before = self._forces = None
        model = self.model
        new = model.string_positions(new)
        if self.constrained:
            new = model.constrained_positions(old, new)
        if self.depth:
            new = self._place(old, new, forces)
        if self._resting is not None:  # a converged band stays put (its run is over, as ASE's alone)
            new = torch.where(segment_broadcast(self._resting, batch.batch_idx)[:, None], old, new)
        batch.positions = new

    def _place(self, old: torch.Tensor, new: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
        """DyNEB's ``set_positions``: image ``i`` moves only if its force is at least ``fmax``."""
        images = self.model.layout.local.shape[0]
        placed = old
        for i in range(1, self.depth + 1):
            if i > 1:
                if self.any_realign:
                    placed = self.align.align(placed, self.realign)
                forces = self.model.band(placed)[1]
            moves = self.always | (image_max_force(forces, self.image_of_row, images) >= self.fmax)
            here = (self.row_local == i) & segment_broadcast(moves, self.image_of_row)
            placed = torch.where(here[:, None], new, placed)
        return placed
