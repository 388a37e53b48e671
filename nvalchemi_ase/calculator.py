"""``BatchedCalculator``: a batched model seen as an ordinary ASE calculator.

``atoms.calc = BatchedCalculator(LennardJones(...))`` gives the same numbers
as ASE's own calculator, so ``ase.optimize.BFGS``, ``ase.md.VelocityVerlet``
and trajectory writing work unchanged; :meth:`BatchedCalculator.calculate_batch`
evaluates a whole list of Atoms in one batched call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from nvalchemi_ase.data import Batch, BatchValidationError
from nvalchemi_ase.data.convert import resolve_device, resolve_dtype
from nvalchemi_ase.models.base import Model, evaluate

_STANDARD = ("energy", "free_energy", "forces", "stress", "energies")


class BatchedCalculator(Calculator):
    """An ASE calculator over a batched model.

    Parameters
    ----------
    model
        A model following :class:`~nvalchemi_ase.models.Model` (e.g.
        :class:`~nvalchemi_ase.models.LennardJones`).
    device
        Where the model runs; ``None`` means CUDA when available, else CPU.
    dtype
        Float dtype of the computation; ``None`` means float64 (ASE's precision).

    Notes
    -----
    Results are numpy arrays and Python floats, as ASE expects. ``stress`` is
    present only for cells that span 3D (as with ASE's LJ and EMT); asking for
    it otherwise raises ``PropertyNotImplementedError``. Per-atom energies and
    a model's extra per-atom outputs (CHGNet's ``magmoms``) are in ``results``
    whenever the model returns them.
    """

    nolabel = True

    def __init__(
        self,
        model: Model,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, Model):
            raise TypeError(
                f"expected a batched model (cutoff, implemented_properties, __call__), got {model!r}"
            )
        self.model = model
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        if isinstance(model, torch.nn.Module):
            model.to(self.device)
        self.implemented_properties = [
            p
            for p in ("energy", "free_energy", "forces", "stress", "energies")
            if p in model.implemented_properties
        ] + [p for p in model.implemented_properties if p not in _STANDARD]
        super().__init__(**kwargs)

    def todict(self, skip_default: bool = True) -> dict[str, Any]:
        """JSON-serialisable description (written by ASE into trajectory files)."""
        parameters = model.todict() if hasattr(model := self.model, "todict") else {}
        return {
            "model": type(model).__name__,
            "model_parameters": parameters,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        properties = list(properties or ("energy",))
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        try:
            self.results = self._evaluate([self.atoms], properties)[0]
        except BatchValidationError as error:  # one Atoms: "system 0" would name the wrong one of a list
            if error.system is None:
                raise
            raise BatchValidationError(error.detail, field=error.field) from None

    def calculate_batch(
        self, atoms_list: Sequence[Atoms], properties: Sequence[str] = ("energy", "forces")
    ) -> list[dict[str, Any]]:
        """Evaluate many Atoms in one batched model call.

        Returns one result dict per system (the same keys and types as
        ``calc.results``). The Atoms are not modified.
        """
        return self._evaluate(list(atoms_list), list(properties))

    def _evaluate(self, atoms_list: list[Atoms], properties: list[str]) -> list[dict[str, Any]]:
        batch = Batch.from_atoms(atoms_list, device=self.device, dtype=self.dtype)
        wanted = ["energy", "forces"] + [
            p for p in properties if p not in ("energy", "free_energy", "forces")
        ]
        with torch.no_grad():
            outputs = evaluate(self.model, batch, wanted)
            neighbor_list = getattr(self.model, "neighbor_list", None)
            if neighbor_list is not None and neighbor_list.settle():
                # Results go to the host anyway: check the list's room now and, after an
                # overflow, recompute with a larger list (engines never wait for this).
                outputs = evaluate(self.model, batch, wanted)
        host = {key: value.detach().cpu().double().numpy() for key, value in outputs.items()}
        starts = np.concatenate([[0], np.cumsum(batch.counts)])
        results = []
        for b in range(batch.num_graphs):
            atoms_slice = slice(starts[b], starts[b + 1])
            energy = float(host["energy"][b, 0])
            result: dict[str, Any] = {
                "energy": energy,
                "free_energy": energy,
                "forces": host["forces"][atoms_slice].copy(),
            }
            if "energies" in host and np.all(np.isfinite(host["energies"][atoms_slice])):
                result["energies"] = host["energies"][atoms_slice].copy()
            if "stress" in host and atoms_list[b].cell.rank == 3 and np.all(np.isfinite(host["stress"][b])):
                result["stress"] = full_3x3_to_voigt_6_stress(host["stress"][b])
            for key, value in host.items():  # a model's extra per-atom outputs (magnetic moments, charges)
                if key not in _STANDARD and value.ndim >= 1 and value.shape[0] == batch.num_nodes:
                    result[key] = value[atoms_slice].copy()
            results.append(result)
        return results
