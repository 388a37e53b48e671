"""Any ASE calculator as a batched model: correct everywhere, fast nowhere.

Each system is evaluated on the host by the calculator, one after another,
and the results are moved to the batch's device. This lets every ASE
calculator (DFT codes, EMT, EAM, ...) drive the batched engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, PropertyNotImplementedError
from ase.stress import voigt_6_to_full_3x3_stress

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, BatchedModel

CalculatorSource = BaseCalculator | Callable[[], BaseCalculator]


class ASECalculatorModel(BatchedModel):
    """Run an ASE calculator system by system as a batched model.

    Parameters
    ----------
    calculator
        An ASE calculator instance, shared by all systems (its cache is then
        per call), or a zero-argument factory called once per system slot, so
        that each system keeps its own calculator and cache.
    """

    cutoff = 0.0
    implemented_properties = ("energy", "free_energy", "forces", "stress", "energies")

    def __init__(self, calculator: CalculatorSource) -> None:
        super().__init__()
        if isinstance(calculator, BaseCalculator):
            self._shared: BaseCalculator | None = calculator
            self._factory: Callable[[], BaseCalculator] | None = None
        elif callable(calculator):
            self._shared, self._factory = None, calculator
        else:
            raise TypeError(
                f"expected an ASE calculator or a factory of them, got {type(calculator).__name__}"
            )
        self._calculators: list[BaseCalculator] = []
        self._atoms: list[Atoms] = []
        self._key: tuple | None = None

    def todict(self) -> dict[str, Any]:
        calculator = self._shared if self._shared is not None else None
        return {"calculator": type(calculator).__name__ if calculator is not None else "factory"}

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        systems = self._systems(batch)
        want_stress, want_per_atom = "stress" in properties, "energies" in properties
        energies: list[Any] = []
        forces: list[np.ndarray] = []
        per_atom: list[np.ndarray] = []
        stresses: list[np.ndarray] = []
        for atoms, calculator in zip(systems, self._calculators_for(len(systems)), strict=True):
            if not (np.isfinite(atoms.positions).all() and np.isfinite(atoms.cell.array).all()):
                _append_nan(
                    len(atoms),
                    energies,
                    forces,
                    per_atom if want_per_atom else None,
                    stresses if want_stress else None,
                )
                continue  # not the calculator's business: NaN results name the system downstream
            atoms.calc = calculator
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
            if want_per_atom:  # only when asked: some calculators run again for them (CHGNet's does)
                per_atom.append(_optional(atoms.get_potential_energies, (len(atoms),)))
            if want_stress:
                stresses.append(_optional(partial(_full_stress, atoms), (3, 3)))
        device, dtype = batch.device, batch.dtype

        def tensor(values: list[np.ndarray]) -> torch.Tensor:
            return torch.as_tensor(np.asarray(values, dtype=float)).to(device=device, dtype=dtype)

        outputs = {
            "energy": tensor(energies).view(-1, 1),
            "forces": torch.as_tensor(np.concatenate(forces)).to(device=device, dtype=dtype),
        }
        if want_per_atom:
            outputs["energies"] = torch.as_tensor(np.concatenate(per_atom)).to(device=device, dtype=dtype)
        if want_stress:
            outputs["stress"] = tensor(stresses)
        return outputs

    def _calculators_for(self, count: int) -> list[BaseCalculator]:
        if self._shared is not None:
            return [self._shared] * count
        assert self._factory is not None
        while len(self._calculators) < count:
            self._calculators.append(self._factory())
        return self._calculators[:count]

    def _systems(self, batch: Batch) -> list[Atoms]:
        """Host Atoms mirroring the batch, reused between calls while the structure holds."""
        key = (tuple(batch.counts.tolist()), batch.atomic_numbers.cpu().numpy().tobytes())
        positions = batch.positions.detach().cpu().double().numpy()
        cell = batch.cell.detach().cpu().double().numpy()
        pbc = batch.pbc.cpu().numpy()
        if key != self._key:
            numbers = batch.atomic_numbers.cpu().numpy()
            starts = np.concatenate([[0], np.cumsum(batch.counts)])
            self._atoms = [Atoms(numbers=numbers[starts[b] : starts[b + 1]]) for b in range(batch.num_graphs)]
            self._key = key
        starts = np.concatenate([[0], np.cumsum(batch.counts)])
        for b, atoms in enumerate(self._atoms):
            atoms.positions[:] = positions[starts[b] : starts[b + 1]]
            atoms.cell[:] = cell[b]
            atoms.pbc[:] = pbc[b]
        return self._atoms


def _append_nan(
    count: int,
    energies: list[Any],
    forces: list[np.ndarray],
    per_atom: list[np.ndarray] | None,
    stresses: list[np.ndarray] | None,
) -> None:
    """NaN results for a system of ``count`` atoms (its positions or cell are not finite)."""
    energies.append(np.nan)
    forces.append(np.full((count, 3), np.nan))
    if per_atom is not None:
        per_atom.append(np.full(count, np.nan))
    if stresses is not None:
        stresses.append(np.full((3, 3), np.nan))


def _full_stress(atoms: Atoms) -> np.ndarray:
    return voigt_6_to_full_3x3_stress(atoms.get_stress(include_ideal_gas=False))


def _optional(get: Callable[[], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """A property the calculator may not provide: NaN when it does not."""
    try:
        return np.asarray(get(), dtype=float).reshape(shape)
    except PropertyNotImplementedError:
        return np.full(shape, np.nan)
