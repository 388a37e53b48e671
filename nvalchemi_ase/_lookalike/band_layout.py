"""The :class:`~nvalchemi_ase.models.band.BandLayout` of a list of ASE ``NEB`` objects (host, once per run).

Which path row, moving row and image belongs to which band, the springs'
constants, the end images' positions and energies, and the cells the
minimum-image springs are taken in (as ASE's ``find_mic``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase.constraints import FixAtoms, FixCartesian, FixCom
from ase.geometry import complete_cell
from ase.geometry.minkowski_reduction import minkowski_reduce

from nvalchemi_ase.models.band import BandLayout
from nvalchemi_ase.ops.neb import METHOD_CODES

__all__ = ["build_layout", "mic_cell", "orthogonal_cells"]


def orthogonal_cells(nebs: Sequence[Any]) -> bool:
    """Whether every band's minimum-image cell is orthogonal (a wrap alone finds the minimum image)."""
    return all(bool(np.all(_reduced_cell(neb)[0][~np.eye(3, dtype=bool)] == 0.0)) for neb in nebs)


def mic_cell(cell: Any, pbc: Any) -> tuple[np.ndarray, np.ndarray]:
    """The cell :func:`~nvalchemi_ase.ops.neb.minimum_image` works in, and its inverse (ASE's ``find_mic``).

    ASE's ``general_find_mic``: the completed cell, Minkowski-reduced along
    the periodic directions (the others kept as they are).
    """
    cell, pbc = complete_cell(np.asarray(cell, dtype=float)), np.asarray(pbc, dtype=bool)
    if pbc.any():
        cell = np.array(minkowski_reduce(cell, pbc)[0])
    return cell, np.linalg.inv(cell)


def _reduced_cell(neb: Any) -> tuple[np.ndarray, np.ndarray]:
    return mic_cell(neb.images[0].cell, neb.images[0].pbc)


def _band_rows(neb: Any, row: int, image: int, band: int, width: int, atoms: int) -> dict[str, np.ndarray]:
    """One band's part of the layout: per path row (``P_``), moving row (``M_``) and path image (``G_``).

    ``width`` and ``atoms``: the most images and atoms per image of any band
    (the padded spline tensors, :mod:`nvalchemi_ase.ops.neb_spline`).
    """
    n, a = neb.nimages, neb.natoms
    path_rows = row + np.arange(n * a).reshape(n, a)
    inner = np.arange(1, n - 1)
    held, fixcom = _image_constraints(neb)
    template = np.array([image_.positions for image_ in neb.images], dtype=float)
    template[inner] = 0.0
    next_rows = np.concatenate([path_rows[1:], path_rows[-1:]])
    previous_rows = np.concatenate([path_rows[:1], path_rows[:-1]])
    local = np.repeat(np.arange(n), a)
    return {
        "P_path_template": template.reshape(-1, 3),
        "P_next_rows": next_rows.reshape(-1),
        "P_previous_path_rows": previous_rows.reshape(-1),
        "P_path_image": np.repeat(image + np.arange(n), a),
        "P_path_local": local,
        "P_spline_slot": (band * width + local) * atoms + np.tile(np.arange(a), n),
        "P_held": held.reshape(-1, 3),
        "P_path_masses": np.concatenate([image_.get_masses() for image_ in neb.images]),
        "G_fixcom": fixcom,
        "G_knot": band * width + np.arange(n),
        "M_moving_rows": path_rows[inner].reshape(-1),
        "M_previous_rows": path_rows[inner - 1].reshape(-1),
        "M_first_row": np.full((n - 2) * a, row),
        "M_atom": np.tile(np.arange(a), n - 2),
        "M_natoms": np.full((n - 2) * a, a),
        "G_spring_k": np.append(np.asarray(neb.k, dtype=float), 0.0),
        "I_moving_image": image + inner,
        "I_local": inner,
        "I_string_target": np.linspace(0.0, 1.0, n)[inner],
    }


def _image_constraints(neb: Any) -> tuple[np.ndarray, np.ndarray]:
    """``[n, a, 3]`` the components FixAtoms / FixCartesian hold, and ``[n]`` the images with FixCom."""
    held = np.zeros((neb.nimages, neb.natoms, 3), dtype=bool)
    fixcom = np.zeros(neb.nimages, dtype=bool)
    for i, image in enumerate(neb.images):
        for constraint in image.constraints:  # moving images hold only these three (_check_band)
            if isinstance(constraint, FixCom):
                fixcom[i] = True
            elif isinstance(constraint, FixCartesian):
                held[i, constraint.index] |= np.asarray(constraint.mask, dtype=bool)
            elif isinstance(constraint, FixAtoms):
                held[i, constraint.get_indices()] = True
    return held, fixcom


def build_layout(nebs: Sequence[Any], ends: Sequence[tuple[float, float]]) -> BandLayout:
    """The :class:`BandLayout` of these bands (``ends``: their end energies), host float64."""
    parts: dict[str, list[np.ndarray]] = {}
    rows, images, first_image, cells, inverses, pbcs, end_energy, image_band = 0, 0, [], [], [], [], [], []
    width, atoms = max(neb.nimages for neb in nebs), max(neb.natoms for neb in nebs)
    for b, neb in enumerate(nebs):
        for name, values in _band_rows(neb, rows, images, b, width, atoms).items():
            parts.setdefault(name, []).append(values)
        n, a = neb.nimages, neb.natoms
        cell, inverse = _reduced_cell(neb)
        cells.append(np.broadcast_to(cell, (n * a, 3, 3)))
        inverses.append(np.broadcast_to(inverse, (n * a, 3, 3)))
        periodic = np.asarray(neb.images[0].cell).any(1) & neb.images[0].pbc  # as find_mic
        pbcs.append(np.broadcast_to(periodic.astype(float), (n * a, 3)))
        end_energy.append(np.concatenate([[ends[b][0]], np.full(n - 2, np.nan), [ends[b][1]]]))
        image_band.append(np.full(n - 2, b))
        first_image.append(images)
        rows, images = rows + n * a, images + n
    tensors = {name[2:]: torch.as_tensor(np.concatenate(values)) for name, values in parts.items()}
    tensors["path_band"] = torch.as_tensor(
        np.repeat(np.arange(len(nebs)), [neb.nimages * neb.natoms for neb in nebs])
    )

    def real(values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=float))

    def flag(values: Any) -> torch.Tensor:
        return torch.as_tensor(np.asarray(list(values), dtype=bool))

    return BandLayout(
        **tensors,
        cell=real(np.concatenate(cells)),
        inverse_cell=real(np.concatenate(inverses)),
        pbc=real(np.concatenate(pbcs)),
        end_energy=real(np.concatenate(end_energy)),
        image_band=torch.as_tensor(np.concatenate(image_band)),
        first_image=torch.as_tensor(np.asarray(first_image)),
        method=torch.as_tensor([METHOD_CODES[neb.method] for neb in nebs]),
        climb=flag(neb.climb for neb in nebs),
        image_count=torch.as_tensor([neb.nimages for neb in nebs]),
        eqlength=real([_eqlength(neb) for neb in nebs]),
        dynamic=flag(getattr(neb, "dynamic_relaxation", False) for neb in nebs),
        dynamic_fmax=real([getattr(neb, "fmax", 0.0) for neb in nebs]),
        scale_fmax=real([getattr(neb, "scale_fmax", 0.0) for neb in nebs]),
    )


def _eqlength(neb: Any) -> float:
    """``eb``'s spring rest length: the straight end-to-end distance (no minimum image) over ``n - 1``."""
    beeline = neb.images[-1].get_positions() - neb.images[0].get_positions()
    return float(np.linalg.norm(beeline) / (neb.nimages - 1))
