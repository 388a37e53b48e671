"""``BandModel``: nudged elastic bands as one model over a batch of bands.

The batch the optimizer sees holds one system per band: the atoms of its
moving images one after the other, so an optimizer's per-system state and
convergence are per band (as ASE's optimizer over one ``NEB``). The model
evaluates every moving image of every band in one call of the images' model
(each image a system of its own), then turns the image forces into NEB
forces (:func:`nvalchemi_ase.ops.neb.band_forces`) on the device. A band's
energy is its highest image's, as ``NEB.get_potential_energy()``.

:class:`BandLayout` holds the index tensors that say which row is which
image of which band; :mod:`nvalchemi_ase._lookalike.bands` builds it from
ASE ``NEB`` objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models.band_spline import BandSplines
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, Model, evaluate
from nvalchemi_ase.ops import constraints
from nvalchemi_ase.ops.neb import (
    SPLINE,
    STRING,
    ImageTerms,
    band_forces,
    highest_images,
    image_max_force,
    minimum_image,
    neighbour_shifts,
)
from nvalchemi_ase.ops.segment import segment_broadcast, segment_max, segment_sum, xyz_sum

__all__ = ["BandLayout", "BandModel"]


@dataclass
class BandLayout:
    """Where each band, image and atom sits, as device tensors.

    Rows: ``P`` path rows (every image of every band, ends included, band by
    band), ``M`` moving rows (the batch's atoms, the moving images in path
    order). Images: ``G`` path images, ``I`` moving images. Bands: ``B``.
    """

    path_template: torch.Tensor
    """``[P, 3]`` the end images' positions (zero on moving rows), Å."""
    moving_rows: torch.Tensor
    """``[M]`` the path row of each moving row."""
    previous_rows: torch.Tensor
    """``[M]`` the same atom's path row in the image before."""
    next_rows: torch.Tensor
    """``[P]`` the same atom's path row in the image after (itself on a band's last image)."""
    path_image: torch.Tensor
    """``[P]`` the path image of each path row."""
    cell: torch.Tensor
    """``[P, 3, 3]`` each path row's band cell (Minkowski-reduced, completed), Å."""
    inverse_cell: torch.Tensor
    """``[P, 3, 3]`` its inverse."""
    pbc: torch.Tensor
    """``[P, 3]`` 1.0 along the band's periodic directions."""
    previous_path_rows: torch.Tensor
    """``[P]`` the same atom's path row in the image before (itself on a band's image 0)."""
    path_local: torch.Tensor
    """``[P]`` the index in its band of each path row's image."""
    path_band: torch.Tensor
    """``[P]`` the band of each path row."""
    spline_slot: torch.Tensor
    """``[P]`` each path row's flat index in the padded ``[B, K, A]`` spline tensors."""
    held: torch.Tensor
    """``[P, 3]`` bool: the components the images' FixAtoms / FixCartesian hold."""
    path_masses: torch.Tensor
    """``[P]`` the atoms' masses (the images' FixCom), amu."""
    fixcom: torch.Tensor
    """``[G]`` bool: the images with a FixCom."""
    knot: torch.Tensor
    """``[G]`` each path image's flat index in the padded ``[B, K]`` knots."""
    string_target: torch.Tensor
    """``[I]`` the reaction coordinate the ``string`` method puts each moving image at, ``i / (n - 1)``."""
    image_count: torch.Tensor
    """``[B]`` each band's number of images."""
    first_row: torch.Tensor
    """``[M]`` the path row of the band's first atom of image 0."""
    atom: torch.Tensor
    """``[M]`` the atom's index within its image."""
    natoms: torch.Tensor
    """``[M]`` its band's atoms per image."""
    end_energy: torch.Tensor
    """``[G]`` the end images' energies (NaN where not evaluated), eV."""
    spring_k: torch.Tensor
    """``[G]`` the constant of the spring after each path image (0 after a band's last), eV/Å²."""
    moving_image: torch.Tensor
    """``[I]`` the path image of each moving image."""
    image_band: torch.Tensor
    """``[I]`` the band of each moving image."""
    local: torch.Tensor
    """``[I]`` each moving image's index within its band (1 .. n-2)."""
    first_image: torch.Tensor
    """``[B]`` the path image of each band's image 0."""
    method: torch.Tensor
    """``[B]`` the method code (:data:`nvalchemi_ase.ops.neb.METHOD_CODES`)."""
    climb: torch.Tensor
    """``[B]`` whether the band has a climbing image."""
    eqlength: torch.Tensor
    """``[B]`` the end-to-end distance over ``n - 1`` (``eb``'s spring rest length), Å."""
    dynamic: torch.Tensor
    """``[B]`` DyNEB's ``dynamic_relaxation``."""
    dynamic_fmax: torch.Tensor
    """``[B]`` DyNEB's ``fmax``, eV/Å."""
    scale_fmax: torch.Tensor
    """``[B]`` DyNEB's ``scale_fmax``, 1/Å."""

    def to(self, device: torch.device, dtype: torch.dtype) -> BandLayout:
        """The layout with floating tensors in ``dtype`` and everything on ``device``."""
        moved = {}
        for spec in fields(self):
            tensor = getattr(self, spec.name)
            moved[spec.name] = tensor.to(device=device, dtype=dtype if tensor.is_floating_point() else None)
        return BandLayout(**moved)

    @property
    def bands(self) -> int:
        return int(self.first_image.shape[0])


class BandModel(torch.nn.Module):
    """The NEB forces of a batch of bands, from a model of the images.

    Parameters
    ----------
    model
        The images' model (any :class:`~nvalchemi_ase.models.base.Model`).
    images
        A batch of the moving images, one system each, in path order; its
        positions are replaced by the band batch's rows at every call (same order).
    layout
        The bands' :class:`BandLayout` on the batch's device and dtype.
    orthogonal
        Every band's cell is orthogonal (a diagonal reduced cell): the minimum
        image is a wrap of each coordinate, with no search among neighbours.

    Notes
    -----
    After each call, ``last`` holds the images' energies ``[I]``, their raw
    forces ``[M, 3]`` (before constraints), each band's highest image ``[B]``
    (its index in the band) and each image's largest NEB force component
    ``[I]`` (ASE's residual), for the look-alike to write into the ``NEB``.
    """

    cutoff = 0.0
    implemented_properties = ("energy", "forces")

    def __init__(self, model: Model, images: Batch, layout: BandLayout, orthogonal: bool = False) -> None:
        super().__init__()
        self.shifts = None if orthogonal else neighbour_shifts(layout.pbc.device, layout.pbc.dtype)
        self.model = model
        self.images = images
        self.layout = layout
        self.any_dynamic = bool(layout.dynamic.any())
        self.last: dict[str, torch.Tensor] = {}
        image_of_row = images.batch_idx
        held = layout.held.index_select(0, layout.moving_rows)
        fixcom = layout.fixcom.index_select(0, layout.moving_image)
        self.held = held if bool(held.any()) else None
        self.fixcom = fixcom if bool(fixcom.any()) else None
        self.splines = BandSplines(layout, image_of_row) if bool(self.spline_bands(layout).any()) else None

    @staticmethod
    def spline_bands(layout: BandLayout) -> torch.Tensor:
        """``[B]`` the bands of the ``spline`` and ``string`` methods."""
        return (layout.method == SPLINE) | (layout.method == STRING)

    def constrained_forces(self, forces: torch.Tensor) -> torch.Tensor:
        """``[M, 3]`` the images' forces after their constraints (``image.get_forces()``)."""
        return constraints.forces(forces, self.images.masses, self.images.batch_idx, self.held, self.fixcom)

    def constrained_positions(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """``[M, 3]`` ``new`` after the images' constraints, from ``old`` (``image.set_positions(new)``)."""
        return constraints.positions(
            old, new, self.images.masses, self.images.batch_idx, self.held, self.fixcom
        )

    def path_and_springs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``[P, 3]`` all images, ``[P, 3]`` the minimum-image springs after each, ``[G]`` their lengths."""
        layout = self.layout
        path = layout.path_template.index_copy(0, layout.moving_rows, positions)
        springs = minimum_image(
            path.index_select(0, layout.next_rows) - path,
            layout.cell,
            layout.inverse_cell,
            layout.pbc,
            self.shifts,
        )
        lengths = torch.sqrt(
            segment_sum(xyz_sum(springs * springs), layout.path_image, layout.end_energy.shape[0])
        )
        return path, springs, lengths

    def string_positions(self, positions: torch.Tensor) -> torch.Tensor:
        """``[M, 3]`` the ``string`` bands' images equally spaced on their spline (ASE's set_positions)."""
        if self.splines is None or not self.splines.any_string:
            return positions
        path, _, lengths = self.path_and_springs(positions)
        return self.splines.string_positions(path, lengths, positions)

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        energy, forces = self.band(batch.positions)
        return {"energy": energy.view(-1, 1), "forces": forces}

    def band(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each band's energy ``[B]`` (its highest image's) and NEB forces ``[M, 3]`` at ``positions``."""
        layout, images = self.layout, self.images
        images.positions = positions
        outputs = evaluate(self.model, images, ("energy", "forces"))
        energies, raw = outputs["energy"].view(-1), outputs["forces"]
        forces = self.constrained_forces(raw)
        path, springs, lengths = self.path_and_springs(positions)
        path_energy = layout.end_energy.index_copy(0, layout.moving_image, energies)
        highest = highest_images(energies, layout.image_band, layout.local, layout.bands)
        terms = self._terms(path_energy, energies, lengths, highest)
        image_of_row = images.batch_idx
        spline = None
        if self.splines is not None:
            spline = self.splines.tangents(path, lengths, terms.k_previous, terms.k_next)
        neb = band_forces(
            forces,
            springs.index_select(0, layout.previous_rows),
            springs.index_select(0, layout.moving_rows),
            image_of_row,
            terms,
            spline,
        )
        residual = segment_max(neb.abs().amax(dim=1), image_of_row, energies.shape[0])  # before DyNEB's rest
        if self.any_dynamic:
            neb = self._dynamic(neb, path, terms, highest)
        self.last = {"image_energy": energies, "image_forces": raw, "highest": highest, "residual": residual}
        return path_energy.index_select(0, layout.first_image + highest), neb

    def _terms(
        self, path_energy: torch.Tensor, energies: torch.Tensor, lengths: torch.Tensor, highest: torch.Tensor
    ) -> ImageTerms:
        layout = self.layout
        g, band = layout.moving_image, layout.image_band

        def band_value(values: torch.Tensor) -> torch.Tensor:
            return segment_broadcast(values, band)

        return ImageTerms(
            energy_previous=path_energy.index_select(0, g - 1),
            energy=energies,
            energy_next=path_energy.index_select(0, g + 1),
            length_previous=lengths.index_select(0, g - 1),
            length_next=lengths.index_select(0, g),
            k_previous=layout.spring_k.index_select(0, g - 1),
            k_next=layout.spring_k.index_select(0, g),
            local=layout.local,
            highest=band_value(highest),
            climb=band_value(layout.climb),
            method=band_value(layout.method),
            eqlength=band_value(layout.eqlength),
        )

    def _dynamic(
        self, neb: torch.Tensor, path: torch.Tensor, terms: ImageTerms, highest: torch.Tensor
    ) -> torch.Tensor:
        """DyNEB: images below their (distance-scaled) ``fmax`` get zero force, the highest excepted."""
        layout, image_of_row = self.layout, self.images.batch_idx
        count = terms.energy.shape[0]
        row_band = segment_broadcast(layout.image_band, image_of_row)
        top_rows = layout.first_row + segment_broadcast(highest, row_band) * layout.natoms + layout.atom
        apart = path.index_select(0, layout.moving_rows) - path.index_select(0, top_rows)
        distance = torch.sqrt(segment_sum(xyz_sum(apart * apart), image_of_row, count))
        band = layout.image_band
        threshold = segment_broadcast(layout.dynamic_fmax, band) * (
            1.0 + distance * segment_broadcast(layout.scale_fmax, band)
        )
        resting = (
            segment_broadcast(layout.dynamic, band)
            & (image_max_force(neb, image_of_row, count) < threshold)
            & (terms.local != terms.highest)
        )
        return neb.masked_fill(segment_broadcast(resting, image_of_row)[:, None], 0.0)
