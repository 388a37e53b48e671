"""Atoms ⇄ Batch conversion, lossless for what ASE holds.

Round trip: positions, momenta (as velocities, exact), masses, numbers, cell,
pbc, tags, ``info``, constraints (``FixAtoms`` becomes the frozen atom category
and comes back as ``FixAtoms``; every other constraint object is carried
unchanged), per-atom arrays the batch has no field for, and energy, forces and
stress as calculator results.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.data import atomic_masses
from ase.stress import full_3x3_to_voigt_6_stress, voigt_6_to_full_3x3_stress

from nvalchemi_ase.data.batch import Batch, SystemMeta, check_float_dtype, default_device
from nvalchemi_ase.data.errors import BatchValidationError
from nvalchemi_ase.data.fields import MODEL_RESULTS, AtomCategory, Scope
from nvalchemi_ase.data.validate import validate_atoms

_ARRAYS_WITH_FIELDS = ("numbers", "positions", "momenta", "masses", "tags")


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means CUDA when available, else CPU; anything else must name a usable device."""
    if device is None:
        return default_device()
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise BatchValidationError(f"not a torch device: {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise BatchValidationError(f"device {device!r} asked for, but CUDA is not available")
    return resolved


def resolve_dtype(dtype: torch.dtype | None) -> torch.dtype:
    """``None`` means float64; otherwise torch.float64 or torch.float32."""
    if dtype is None:
        return torch.float64
    return check_float_dtype(dtype)


def atoms_to_batch(
    atoms: Atoms | Sequence[Atoms],
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Batch:
    """Build a :class:`Batch` from one ``Atoms`` or a list of them.

    Parameters
    ----------
    atoms
        One ``ase.Atoms`` or a non-empty sequence of them (sizes may differ).
    device
        Target device; ``None`` means CUDA when available, else CPU.
    dtype
        Float dtype of the float fields; ``None`` means ``torch.float64``.

    Raises
    ------
    BatchValidationError
        Naming the system index and field: empty list, an empty system,
        non-finite positions or momenta, non-positive masses, pbc with a
        degenerate cell, or a bad device or dtype.
    """
    systems = [atoms] if isinstance(atoms, Atoms) else list(atoms)
    if not systems:
        raise BatchValidationError("an empty list of Atoms cannot be batched")
    target_device = resolve_device(device)
    target_dtype = resolve_dtype(dtype)
    for index, system in enumerate(systems):
        validate_atoms(system, index)

    counts = np.array([len(s) for s in systems], dtype=np.int64)
    categories = np.concatenate([_categories(s) for s in systems])
    host: dict[str, np.ndarray] = {
        "positions": np.concatenate([s.positions for s in systems]),
        "velocities": np.concatenate([s.get_velocities() for s in systems]),
        "masses": np.concatenate([s.get_masses() for s in systems]),
        "atomic_numbers": np.concatenate([s.numbers for s in systems]).astype(np.int64),
        "atom_categories": categories,
        "tags": np.concatenate([s.get_tags() for s in systems]).astype(np.int64),
        "cell": np.stack([s.cell.array for s in systems]),
        "pbc": np.stack([s.pbc for s in systems]),
        "status": np.zeros(len(systems), dtype=np.int64),
        "system_id": np.arange(len(systems), dtype=np.int64),
    }
    host.update(_calculator_results(systems, counts))
    fields = {
        name: torch.as_tensor(value).to(
            device=target_device, dtype=target_dtype if value.dtype.kind == "f" else None
        )
        for name, value in host.items()
    }
    return Batch(counts, fields, [_meta(s) for s in systems])


def _categories(atoms: Atoms) -> np.ndarray:
    categories = np.full(len(atoms), AtomCategory.NORMAL.value, dtype=np.int64)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            categories[constraint.get_indices()] = AtomCategory.FROZEN.value
    return categories


def _meta(atoms: Atoms) -> SystemMeta:
    constraints = [c for c in atoms.constraints if not isinstance(c, FixAtoms)]
    fix_slots = [k for k, c in enumerate(atoms.constraints) if isinstance(c, FixAtoms)]
    return SystemMeta(
        info=copy.deepcopy(atoms.info),
        constraints=copy.deepcopy(constraints),
        arrays={k: v.copy() for k, v in atoms.arrays.items() if k not in _ARRAYS_WITH_FIELDS},
        explicit_masses="masses" in atoms.arrays,
        explicit_momenta="momenta" in atoms.arrays,
        fixatoms_slot=fix_slots[0] if fix_slots else None,
        celldisp=np.array(atoms.get_celldisp()).reshape(3),
    )


def _property(atoms: Atoms, name: str) -> Any:
    if atoms.calc is None:
        return None
    try:
        return atoms.calc.get_property(name, atoms, allow_calculation=False)
    except PropertyNotImplementedError:
        return None


def _calculator_results(systems: list[Atoms], counts: np.ndarray) -> dict[str, np.ndarray]:
    """Energy, forces and stress that the systems' calculators hold (NaN where one lacks it)."""
    energy = [_property(s, "energy") for s in systems]
    forces = [_property(s, "forces") for s in systems]
    stress = [_property(s, "stress") for s in systems]
    results: dict[str, np.ndarray] = {}
    if any(e is not None for e in energy):
        results["energy"] = np.array([[np.nan if e is None else e] for e in energy], dtype=float)
    if any(f is not None for f in forces):
        results["forces"] = np.concatenate(
            [np.full((n, 3), np.nan) if f is None else f for f, n in zip(forces, counts, strict=True)]
        )
    if any(s is not None for s in stress):
        results["stress"] = np.stack(
            [np.full((3, 3), np.nan) if s is None else _full_stress(s) for s in stress]
        )
    return results


def _full_stress(stress: np.ndarray) -> np.ndarray:
    stress = np.asarray(stress, dtype=float)
    return stress if stress.shape == (3, 3) else voigt_6_to_full_3x3_stress(stress)


def batch_to_atoms(batch: Batch) -> list[Atoms]:
    """The batch's systems as new ``ase.Atoms`` objects.

    Energy, forces, stress and the model's other results (where computed and
    finite; see :data:`~nvalchemi_ase.data.fields.MODEL_RESULTS`) come back as a
    ``SinglePointCalculator``; frozen atoms come back as one ``FixAtoms``, in
    the place the original ``FixAtoms`` had among the constraints.
    """
    host = {name: getattr(batch, name).detach().cpu().numpy() for name in batch.field_names()}
    starts = np.concatenate([[0], np.cumsum(batch.counts)])
    result = []
    for b, meta in enumerate(batch.meta):
        atoms_slice = slice(starts[b], starts[b + 1])
        result.append(_system_atoms(host, b, atoms_slice, meta))
    return result


def _system_atoms(host: dict[str, np.ndarray], b: int, atoms_slice: slice, meta: SystemMeta) -> Atoms:
    numbers = host["atomic_numbers"][atoms_slice]
    masses = host["masses"][atoms_slice].astype(float)
    velocities = host["velocities"][atoms_slice].astype(float)
    atoms = Atoms(
        numbers=numbers,
        positions=host["positions"][atoms_slice].astype(float),
        cell=host["cell"][b].astype(float),
        pbc=host["pbc"][b],
        tags=host["tags"][atoms_slice],
        celldisp=meta.celldisp,
        info=copy.deepcopy(meta.info),
    )
    if meta.explicit_masses or not np.array_equal(masses, atomic_masses[numbers]):
        atoms.set_masses(masses)
    if meta.explicit_momenta or np.any(velocities != 0.0):
        atoms.set_momenta(velocities * masses[:, None], apply_constraint=False)
    for name, value in meta.arrays.items():
        atoms.arrays[name] = value.copy()
    atoms.set_constraint(_constraints(host["atom_categories"][atoms_slice], meta))
    results = _results(host, b, atoms_slice)
    if results:
        atoms.calc = SinglePointCalculator(atoms, **results)
    return atoms


def _constraints(categories: np.ndarray, meta: SystemMeta) -> list[Any]:
    constraints = copy.deepcopy(meta.constraints)
    frozen = np.flatnonzero(categories == AtomCategory.FROZEN.value)
    if frozen.size:
        slot = len(constraints) if meta.fixatoms_slot is None else meta.fixatoms_slot
        constraints.insert(min(slot, len(constraints)), FixAtoms(indices=frozen))
    return constraints


def _results(host: dict[str, np.ndarray], b: int, atoms_slice: slice) -> dict[str, Any]:
    results: dict[str, Any] = {}
    if "energy" in host and np.isfinite(host["energy"][b, 0]):
        energy = float(host["energy"][b, 0])
        results["energy"] = energy
        results["free_energy"] = energy
    if "forces" in host and np.all(np.isfinite(host["forces"][atoms_slice])):
        results["forces"] = host["forces"][atoms_slice].astype(float)
    if "stress" in host and np.all(np.isfinite(host["stress"][b])):
        results["stress"] = full_3x3_to_voigt_6_stress(host["stress"][b].astype(float))
    for name, scope in MODEL_RESULTS.items():  # a model's extra outputs (magnetic moments, charges)
        if name in host:
            value = host[name][atoms_slice if scope is Scope.ATOM else b]
            if np.all(np.isfinite(value)):
                results[name] = np.array(value, dtype=float)
    return results
