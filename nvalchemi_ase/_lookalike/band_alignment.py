"""NEB's ``remove_rotation_and_translation``: each image aligned on the one before, before every compute.

ASE's ``NEB.get_forces()`` calls ``minimize_rotation_and_translation(images[i-1],
images[i])`` for ``i = 1 .. n-1`` (the final image included) before evaluating
the images: in a periodic cell the image is replaced by the one before plus its
minimum-image displacement, less that displacement's mean; otherwise it is
rotated (quaternion fit) and translated onto the one before. The images are
aligned one index after the other (each on the already aligned one), each
through ``set_positions``, so its constraints act (FixAtoms, FixCartesian,
FixCom; the final image's too); this hook does every band at once for each
index, on the device.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.models.band import BandModel
from nvalchemi_ase.ops import constraints
from nvalchemi_ase.ops.neb import kabsch_rotations, minimum_image, neighbour_shifts
from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, segment_sum

__all__ = ["AlignImagesHook"]


class _Index:
    """The rows of image ``i`` of every aligned band that has one, and of image ``i - 1``."""

    def __init__(
        self,
        rows: np.ndarray,
        bands: np.ndarray,
        periodic: np.ndarray,
        natoms: np.ndarray,
        layout: Any,
    ):
        device = layout.path_template.device
        self.rows = torch.as_tensor(rows, device=device)
        self.previous = torch.as_tensor(rows - np.repeat(natoms, natoms), device=device)
        self.group = torch.as_tensor(np.repeat(np.arange(len(natoms)), natoms), device=device)
        self.groups = len(natoms)
        self.band = torch.as_tensor(bands, device=device)
        self.periodic = torch.as_tensor(np.repeat(periodic, natoms), device=device)[:, None]
        self.counts = torch.as_tensor(natoms, device=device)
        held = layout.held.index_select(0, self.rows)
        fixcom = layout.fixcom.index_select(0, layout.path_image.index_select(0, self.rows))
        fixcom = segment_max(fixcom, self.group, self.groups)
        self.held = held if bool(held.any()) else None
        self.fixcom = fixcom if bool(fixcom.any()) else None
        self.masses = layout.path_masses.index_select(0, self.rows)


class AlignImagesHook:
    """Aligns the images of the bands with ``remove_rotation_and_translation`` before each compute."""

    stage = DynamicsStage.BEFORE_COMPUTE
    frequency = 1

    def __init__(self, model: BandModel, nebs: list[Any], path_starts: np.ndarray) -> None:
        self.model = model
        device = model.layout.path_template.device
        self.shifts = neighbour_shifts(device, model.layout.path_template.dtype)
        depth = max(neb.nimages for neb in nebs if neb.remove_rotation_and_translation)
        self.bands = torch.as_tensor(
            [bool(neb.remove_rotation_and_translation) for neb in nebs], device=device
        )
        self.indices = []
        for i in range(1, depth):
            chosen = [
                b for b, neb in enumerate(nebs) if neb.remove_rotation_and_translation and i < neb.nimages
            ]
            natoms = np.array([nebs[b].natoms for b in chosen])
            rows = np.concatenate(
                [path_starts[b] + i * nebs[b].natoms + np.arange(nebs[b].natoms) for b in chosen]
            )
            periodic = np.array([bool(np.asarray(nebs[b].images[0].pbc).any()) for b in chosen])
            self.indices.append(_Index(rows, np.array(chosen), periodic, natoms, model.layout))

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        ctx.batch.positions = self.align(ctx.batch.positions)

    def align(self, positions: torch.Tensor, only: torch.Tensor | None = None) -> torch.Tensor:
        """``[M, 3]`` the moving images aligned (the final images in the layout's template too).

        ``only``: ``[B]`` bool, the bands to align (default: every band with
        ``remove_rotation_and_translation``).
        """
        layout = self.model.layout
        path = layout.path_template.index_copy(0, layout.moving_rows, positions)
        for index in self.indices:
            current = path.index_select(0, index.rows)
            aligned = self._aligned(path, index)
            if index.held is not None or index.fixcom is not None:
                aligned = constraints.positions(
                    current, aligned, index.masses, index.group, index.held, index.fixcom
                )
            if only is not None:
                chosen = only.index_select(0, index.band).index_select(0, index.group)[:, None]
                aligned = torch.where(chosen, aligned, current)
            path = path.index_copy(0, index.rows, aligned)
        layout.path_template = path  # the final images moved too (its moving rows are overwritten on use)
        return path.index_select(0, layout.moving_rows)

    def _aligned(self, path: torch.Tensor, index: _Index) -> torch.Tensor:
        layout = self.model.layout
        p, p0 = path.index_select(0, index.rows), path.index_select(0, index.previous)
        counts = index.counts.to(path.dtype)[:, None]

        def mean(values: torch.Tensor) -> torch.Tensor:
            return segment_broadcast(segment_sum(values, index.group, index.groups) / counts, index.group)

        displacement = minimum_image(
            p - p0,
            layout.cell.index_select(0, index.rows),
            layout.inverse_cell.index_select(0, index.rows),
            layout.pbc.index_select(0, index.rows),
            self.shifts,
        )
        shifted = p0 + displacement - mean(displacement)
        centred, centred0 = p - mean(p), p0 - mean(p0)
        rotations = kabsch_rotations(centred, centred0, index.group, index.groups)
        rotated = torch.einsum("rj,rij->ri", centred, rotations.index_select(0, index.group)) + mean(p0)
        return torch.where(index.periodic, shifted, rotated)
