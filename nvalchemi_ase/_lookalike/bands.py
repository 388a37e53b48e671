"""ASE ``NEB`` objects as systems of the look-alike optimizers: one system per band.

:class:`Bands` does for a list of ``ase.mep.NEB`` / ``DyNEB`` objects what
:class:`~nvalchemi_ase._lookalike.systems.Systems` does for a list of
``Atoms``: each band becomes one system of the batch (its moving images'
atoms one after the other, the optimizable ASE's optimizer sees), the model
is a :class:`~nvalchemi_ase.models.band.BandModel` over the images' model,
and after each reported step the images' positions, their calculators'
cached results and the ``NEB``'s ``energies``, ``real_forces``, ``imax`` and
``emax`` are what ASE's ``NEB.get_forces()`` leaves, so ``neb.iterimages()``,
trajectories and ``NEBTools`` work as with ASE.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixAtoms, FixCartesian, FixCom
from ase.mep.neb import BaseNEB
from ase.optimize.precon.precon import IdentityPrecon, PreconImages

from nvalchemi_ase._lookalike.band_alignment import AlignImagesHook
from nvalchemi_ase._lookalike.band_layout import build_layout, orthogonal_cells
from nvalchemi_ase._lookalike.band_placement import PlaceImagesHook
from nvalchemi_ase._lookalike.systems import Systems, _same_model
from nvalchemi_ase.calculator import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.models.band import BandModel
from nvalchemi_ase.models.base import evaluate
from nvalchemi_ase.ops.neb import METHOD_CODES

__all__ = ["Bands", "is_band_input"]


def is_band_input(atoms: Any) -> bool:
    """Whether a look-alike was given an NEB (or a list of them) rather than Atoms."""
    if isinstance(atoms, BaseNEB):
        return True
    return isinstance(atoms, list | tuple) and len(atoms) > 0 and isinstance(atoms[0], BaseNEB)


def _check_band(b: int, neb: Any) -> None:
    """What this batched NEB does not cover raises here, naming the band, before anything moves."""
    if not isinstance(neb, BaseNEB):
        raise TypeError(f"atoms[{b}] is a {type(neb).__name__}: a list of bands holds NEB objects only")
    if neb.nimages < 3:
        raise ValueError(f"band {b}: an NEB needs at least 3 images (it has {neb.nimages})")
    if neb.method not in METHOD_CODES:
        raise NotImplementedError(f"band {b}: method={neb.method!r} is not one of {sorted(METHOD_CODES)}")
    if not _identity_precon(neb.precon):
        raise NotImplementedError(
            f"band {b}: precon={neb.precon!r} is not supported (only the identity: precon=None or 'ID')"
        )
    if getattr(neb, "scale_fmax", 0.0) and not getattr(neb, "dynamic_relaxation", False):
        raise ValueError(f"band {b}: scale_fmax needs dynamic_relaxation")
    for i, image in enumerate(neb.images[1:], start=1):
        kinds = [type(c) for c in image.constraints]
        if not kinds or not (i < neb.nimages - 1 or neb.remove_rotation_and_translation):
            continue  # the end images' constraints act only when the alignment moves the final one
        holding = [kind for kind in kinds if kind in (FixAtoms, FixCartesian)]
        if neb.remove_rotation_and_translation and holding:
            raise NotImplementedError(
                f"band {b}, image {i}: remove_rotation_and_translation=True with {holding[0].__name__}: "
                "ASE's alignment then moves the free atoms again at every force call (the held atoms "
                "snap back after each shift), so its band depends on how often the optimizer asks for "
                "forces; not reproduced (FixCom, or no constraint, is)"
            )
        if FixCom in kinds and kinds != [FixCom]:
            raise NotImplementedError(
                f"band {b}, image {i}: FixCom with other constraints "
                "(an image holds FixAtoms and FixCartesian, or one FixCom alone)"
            )
        others = [kind for kind in kinds if kind not in (FixAtoms, FixCartesian, FixCom)]
        if others:
            raise NotImplementedError(
                f"band {b}, image {i}: constraint {others[0].__name__} "
                "(the images of an NEB take FixAtoms, FixCartesian or FixCom)"
            )
    if not neb.allow_shared_calculator:
        calculators = [image.calc for image in neb.images if image.calc is not None]
        if len({id(c) for c in calculators}) != len(calculators):
            raise ValueError(
                f"band {b}: One or more NEB images share the same calculator.  "
                "Each image must have its own calculator."
            )


def _identity_precon(precon: Any) -> bool:
    """Whether an NEB's ``precon`` is the identity (None, ``'ID'``, or what ASE made of them)."""
    if precon is None or (isinstance(precon, str) and precon in ("ID", "IdentityPrecon")):
        return True
    if isinstance(precon, IdentityPrecon):
        return True
    if isinstance(precon, PreconImages | list):
        return all(isinstance(p, IdentityPrecon) for p in precon)
    return False


def _band_atoms(neb: Any) -> Atoms:
    """The optimizable of one band: its moving images' atoms as one Atoms.

    As ASE's ``NEBOptimizable``, it has no constraints: the images' own act
    when positions are set and forces evaluated (:class:`BandModel`,
    :class:`~nvalchemi_ase._lookalike.band_placement.PlaceImagesHook`).
    """
    moving = neb.images[1:-1]
    return Atoms(
        numbers=np.concatenate([image.numbers for image in moving]),
        positions=np.concatenate([image.positions for image in moving]),
        masses=np.concatenate([image.get_masses() for image in moving]),
        cell=neb.images[0].cell,
        pbc=neb.images[0].pbc,
    )


def _end_energies(
    nebs: list[Any], model: Any, device: torch.device, dtype: torch.dtype
) -> list[tuple[float, float]]:
    """Each band's end energies, as ASE's ``get_forces()`` reads them (NaN for ``aseneb``, which does not).

    Ends on a ``BatchedCalculator`` of the images' ``model`` that have no
    cached energy are evaluated in one batched call, and the results cached
    in their calculators (as their own ``get_potential_energy()`` would);
    any other end computes itself.
    """
    ends = [image for neb in nebs if neb.method != "aseneb" for image in (neb.images[0], neb.images[-1])]
    batched = [
        image
        for image in ends
        if model is not None
        and isinstance(image.calc, BatchedCalculator)
        and _same_model(image.calc.model, model)
        and image.calc.get_property("energy", image, allow_calculation=False) is None
    ]
    if len(batched) > 1:
        batch = Batch.from_atoms(batched, device=device, dtype=dtype)
        outputs = evaluate(model, batch, ("energy", "forces"))
        energies, forces = to_host([outputs["energy"].view(-1), outputs["forces"]])
        starts = np.concatenate([[0], np.cumsum(batch.counts)])
        for b, image in enumerate(batched):
            Systems._install(image, float(energies[b]), forces[starts[b] : starts[b + 1]])
    pairs = []
    for neb in nebs:
        if neb.method == "aseneb":
            pairs.append((np.nan, np.nan))
        else:
            pairs.append((neb.images[0].get_potential_energy(), neb.images[-1].get_potential_energy()))
    return pairs


class Bands:
    """A list of NEB objects as one batch of bands (see the module docstring).

    Parameters
    ----------
    nebs
        An ``ase.mep.NEB`` / ``DyNEB`` or a non-empty sequence of them (any
        systems, any image counts). The moving images of all bands carry one
        ``BatchedCalculator`` model (evaluated in one call), or any ASE
        calculators (evaluated image by image).
    """

    momenta = False

    def __init__(self, nebs: Any) -> None:
        self.nebs = [nebs] if isinstance(nebs, BaseNEB) else list(nebs)
        for b, neb in enumerate(self.nebs):
            _check_band(b, neb)
        self.images = [image for neb in self.nebs for image in neb.images[1:-1]]
        moving = Systems(self.images, momenta=False)  # resolves the model, one calculator per image
        inner, self.device, self.dtype, self.batched = (
            moving.model,
            moving.device,
            moving.dtype,
            moving.batched,
        )
        self.atoms = [_band_atoms(neb) for neb in self.nebs]
        self.batch = Batch.from_atoms(self.atoms, device=self.device, dtype=self.dtype)
        self.batch.forces = None
        self.batch.energy = None
        self.batch.stress = None
        self._ends = _end_energies(self.nebs, inner if self.batched else None, self.device, self.dtype)
        layout = build_layout(self.nebs, self._ends).to(self.device, self.dtype)
        self.model = BandModel(inner, moving.batch, layout, orthogonal=orthogonal_cells(self.nebs))
        self.starts = np.concatenate([[0], np.cumsum(self.batch.counts)])
        self._image_starts = moving.starts
        self._path_starts = np.concatenate([[0], np.cumsum([neb.nimages * neb.natoms for neb in self.nebs])])
        self._aligned = [b for b, neb in enumerate(self.nebs) if neb.remove_rotation_and_translation]
        self._positions = [atoms.positions.copy() for atoms in self.atoms]

    def __len__(self) -> int:
        return len(self.nebs)

    def rows(self, b: int) -> slice:
        return slice(int(self.starts[b]), int(self.starts[b + 1]))

    def hooks(self) -> list[Any]:
        """The engine hooks the bands need: ASE's ``set_positions`` (string, constraints, DyNEB); NEB-TR."""
        align = AlignImagesHook(self.model, self.nebs, self._path_starts) if self._aligned else None
        depth = max(neb.nimages for neb in self.nebs) - 2 if self.model.any_dynamic else 0
        hooks: list[Any] = [PlaceImagesHook(self.model, depth, align)]
        if align is not None:
            hooks.append(align)
        return hooks

    def degrees_of_freedom(self) -> np.ndarray:
        """``[B]`` the degrees of freedom of each band's moving images (constraint-aware)."""
        return np.array([float(atoms.get_number_of_degrees_of_freedom()) for atoms in self.atoms])

    def frame(self, b: int) -> Any:
        """What a trajectory writes for band ``b`` at a step: the NEB (all its images, as ASE)."""
        return self.nebs[b]

    def report_tensors(self) -> dict[str, torch.Tensor]:
        """The images' energies and raw forces and the highest images, brought along with each report."""
        tensors = {f"band_{name}": value for name, value in self.model.last.items()}
        if self._aligned:  # the final images move with the alignment
            tensors["band_path"] = self.model.layout.path_template
        return tensors

    # ------------------------------------------------------------------ device -> NEB
    def refresh(
        self,
        positions: np.ndarray,
        velocities: np.ndarray | None,
        energy: np.ndarray,
        forces: np.ndarray,
        systems: Iterable[int],
        host: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write positions into the moving images and the NEB state ASE's ``get_forces()`` leaves."""
        assert host is not None
        image_energy, image_forces = host["band_image_energy"], host["band_image_forces"]
        highest = host["band_highest"]
        first = np.concatenate([[0], np.cumsum([neb.nimages - 2 for neb in self.nebs])])
        for b in systems:
            neb, atoms, rows = self.nebs[b], self.atoms[b], self.rows(b)
            atoms.set_positions(positions[rows], apply_constraint=False)
            self._positions[b] = atoms.positions.copy()
            energies = np.empty(neb.nimages)
            energies[0], energies[-1] = self._ends[b]
            real_forces = np.zeros((neb.nimages, neb.natoms, 3))
            residuals = []
            for i, image in enumerate(neb.images[1:-1], start=1):
                j = int(first[b]) + i - 1
                image_rows = slice(int(self._image_starts[j]), int(self._image_starts[j + 1]))
                image.set_positions(positions[image_rows], apply_constraint=False)
                energies[i], real_forces[i] = image_energy[j], image_forces[image_rows]
                if self.batched:
                    Systems._install(image, float(image_energy[j]), image_forces[image_rows])
                if not (neb.climb and i == int(highest[b])):
                    residuals.append(host["band_residual"][j])  # ASE's get_residual: the inf-norm
            if b in self._aligned:
                last = int(self._path_starts[b + 1]) - neb.natoms
                neb.images[-1].set_positions(
                    host["band_path"][last : last + neb.natoms], apply_constraint=False
                )
            neb.energies, neb.real_forces, neb.residuals = energies, real_forces, residuals
            neb.imax = int(highest[b])
            neb.emax = energies[neb.imax]

    # ------------------------------------------------------------------ NEB -> device
    def pull_edits(self) -> bool:
        """Images moved by user code since the last write go to the device; True if any did."""
        moved = []
        for b, neb in enumerate(self.nebs):
            current = np.concatenate([image.positions for image in neb.images[1:-1]])
            if not np.array_equal(current, self._positions[b]):
                self.atoms[b].positions[:] = current
                moved.append(b)
        if moved:
            rows = np.concatenate([np.arange(self.starts[b], self.starts[b + 1]) for b in moved])
            index = torch.as_tensor(rows, dtype=torch.long, device=self.batch.positions.device)
            values = np.concatenate([self.atoms[b].positions for b in moved])
            source = torch.as_tensor(values, dtype=self.batch.positions.dtype).to(self.batch.positions.device)
            self.batch.positions = self.batch.positions.index_copy(0, index, source)
        for b in moved:
            self._positions[b] = self.atoms[b].positions.copy()
        return bool(moved)
