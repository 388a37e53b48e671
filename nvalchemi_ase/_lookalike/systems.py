"""The systems a look-alike advances: ``Atoms`` in, one device ``Batch``, ``Atoms`` kept current.

:class:`Systems` takes one ``Atoms`` or a list, picks the model (the batched
model of a :class:`~nvalchemi_ase.calculator.BatchedCalculator`, else any ASE
calculator through :class:`~nvalchemi_ase.models.ASECalculatorModel`), builds
the batch, and moves state between the device and the ``Atoms``:

* :meth:`Systems.refresh` writes positions, momenta, energy and forces back
  into the ``Atoms`` (the energy and forces as the calculator's cached results,
  so ``atoms.get_forces()`` costs nothing and trajectory writers find them);
* :meth:`Systems.pull_edits` sends positions or momenta that user code changed
  on the host (observers, edits between runs) back to the device.

ASE's cell filters (``FrechetCellFilter``, ``UnitCellFilter``,
``ExpCellFilter``, ``StrainFilter``) are accepted in place of ``Atoms``: the
systems are their ``atoms``, and their settings become the batch's cell-filter
fields (:mod:`nvalchemi_ase._lookalike.cell_filters`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import BaseCalculator, Calculator, all_changes
from ase.filters import Filter
from ase.stress import full_3x3_to_voigt_6_stress

from nvalchemi_ase._lookalike.cell_filters import add_filter_fields, is_cell_filter, sync_filter
from nvalchemi_ase.calculator import BatchedCalculator
from nvalchemi_ase.data import MODEL_RESULTS, Batch, Scope
from nvalchemi_ase.data.errors import BatchValidationError
from nvalchemi_ase.hooks.safety import NonFiniteError
from nvalchemi_ase.models import ASECalculatorModel

__all__ = ["Systems"]


class _CalculatorView(Calculator):
    """A per-system cache in front of an ASE calculator that several systems share.

    Holds the results the look-alike writes for its system; asked for anything
    else it asks the shared calculator (correct, as ASE would).
    """

    def __init__(self, base: BaseCalculator) -> None:
        self.base = base
        self.implemented_properties = list(base.implemented_properties)
        super().__init__()

    @property
    def name(self) -> str:  # what trajectories record: the shared calculator's name
        return str(getattr(self.base, "name", type(self.base).__name__.lower()))

    def todict(self, skip_default: bool = True) -> dict[str, Any]:
        return self.base.todict() if hasattr(self.base, "todict") else {}

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] | None = None,
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        properties = list(properties or ("energy",))
        super().calculate(atoms, properties, system_changes)
        for name in properties:
            self.base.get_property(name, self.atoms)
        # copies: calculators such as EMT rewrite their result arrays in place for the next system
        self.results = {name: copy.deepcopy(value) for name, value in self.base.results.items()}


def _same_model(first: Any, other: Any) -> bool:
    if first is other:
        return True
    if type(first) is not type(other) or not hasattr(first, "todict"):
        return False
    return bool(first.todict() == other.todict())


def _check_batched(systems: list[Atoms], first: BatchedCalculator) -> None:
    for index, atoms in enumerate(systems[1:], start=1):
        calc = atoms.calc
        if calc is None or calc is first:
            continue
        if not (isinstance(calc, BatchedCalculator) and _same_model(first.model, calc.model)):
            raise ValueError(
                f"atoms[{index}].calc differs from atoms[0].calc: a list of systems is advanced "
                "with one model (give every system the same BatchedCalculator, or none)"
            )


def _host_model(systems: list[Atoms], first: BaseCalculator) -> ASECalculatorModel:
    """Each system evaluated by its own ASE calculator (``atoms[0]``'s for systems without one).

    A calculator object that several systems share is put behind one view per
    system, so each keeps its own cached results while the shared one computes.
    """
    calculators = [atoms.calc if atoms.calc is not None else first for atoms in systems]
    holders: dict[int, int] = {}
    for calc in calculators:
        holders[id(calc)] = holders.get(id(calc), 0) + 1
    for atoms, calc in zip(systems, calculators, strict=True):
        atoms.calc = _CalculatorView(calc) if holders[id(calc)] > 1 else calc
    pending = iter([atoms.calc for atoms in systems])  # one slot per system, in order
    return ASECalculatorModel(lambda: next(pending))


def _resolve_model(systems: list[Atoms]) -> tuple[Any, torch.device, torch.dtype, bool]:
    """The model every system is advanced with, its device and dtype, and whether it is batched."""
    first = systems[0].calc
    if first is None:
        raise ValueError(
            "atoms[0] has no calculator: set atoms.calc (a BatchedCalculator runs on its device, "
            "any other ASE calculator on the host)"
        )
    if isinstance(first, BatchedCalculator):
        _check_batched(systems, first)
        return first.model, first.device, first.dtype, True
    return _host_model(systems, first), torch.device("cpu"), torch.float64, False


class Systems:
    """One ``Atoms`` or a list of them, as one batch on the model's device.

    Parameters
    ----------
    atoms
        An ``ase.Atoms`` or a non-empty sequence of them (sizes may differ).
    momenta
        Whether the device velocities are the systems' state (MD) and go back
        into the ``Atoms`` as momenta; optimizers leave momenta alone.

    Notes
    -----
    Every system needs its own calculator object to hold its own cached
    results. With a ``BatchedCalculator``, systems after the first that share
    one (or have none) get a new ``BatchedCalculator`` over the same model, and
    the look-alike writes the device's energy and forces into their caches.
    Other ASE calculators compute each system themselves (so their caches are
    current); one shared by several systems is put behind a view per system
    (``atoms.calc.base`` is the shared calculator).
    """

    def __init__(self, atoms: Atoms | Sequence[Atoms], *, momenta: bool, filters: bool = False) -> None:
        single = isinstance(atoms, Atoms | Filter)  # a Filter iterates over its atoms: not a list
        given: list[Any] = [atoms] if single else list(atoms)
        if not given:
            raise ValueError("atoms: an empty list has nothing to advance")
        for index, system in enumerate(given):
            if not (isinstance(system, Atoms) or (filters and is_cell_filter(system))):
                allowed = "ase.Atoms or one of ASE's cell filters" if filters else "ase.Atoms"
                raise TypeError(f"atoms[{index}] is a {type(system).__name__}, not {allowed}")
        self.filters = [system if is_cell_filter(system) else None for system in given]
        """Per system, the ASE cell filter it came in (or None)."""
        self.has_filters = any(f is not None for f in self.filters)
        systems: list[Atoms] = [system.atoms if is_cell_filter(system) else system for system in given]
        first_seen: dict[int, int] = {}
        for index, system in enumerate(systems):
            earlier = first_seen.setdefault(id(system), index)
            if earlier != index:
                raise ValueError(
                    f"atoms[{earlier}] and atoms[{index}] are the same Atoms object: each system "
                    "needs its own (pass atoms.copy() for a second run of the same structure)"
                )
        self.atoms = systems
        self.momenta = momenta
        self.model, self.device, self.dtype, self.batched = _resolve_model(systems)
        if self.batched:
            self._own_calculators()
        self.batch = Batch.from_atoms(systems, device=self.device, dtype=self.dtype)
        self.batch.forces = None  # always computed afresh by the engine, with its hooks
        self.batch.energy = None
        self.batch.stress = None
        self.starts = np.concatenate([[0], np.cumsum(self.batch.counts)])
        if self.has_filters:
            add_filter_fields(self.batch, self.filters)
        self._positions = [a.positions.copy() for a in systems]
        self._cells = [a.cell.array.copy() for a in systems]
        self._momenta = [a.get_momenta() for a in systems]

    def __len__(self) -> int:
        return len(self.atoms)

    def rows(self, b: int) -> slice:
        """The atom rows of system ``b`` in the batch."""
        return slice(int(self.starts[b]), int(self.starts[b + 1]))

    def frame(self, b: int) -> Atoms:
        """What a trajectory writes for system ``b`` at a step."""
        return self.atoms[b]

    def report_tensors(self) -> dict[str, torch.Tensor]:
        """Device values beyond positions, energy and forces that :meth:`refresh` needs: the
        model's other results (``magmoms``, per-atom ``energies``, ...) and the cell filters' state."""
        batch = self.batch
        held = batch.field_names()
        tensors = {name: getattr(batch, name) for name in MODEL_RESULTS if name in held}
        if self.has_filters:
            tensors.update(cell=batch.cell, stress=batch.stress, cell_strain=batch.cell_strain)
        return tensors

    def degrees_of_freedom(self) -> np.ndarray:
        """``[B]`` ASE's ``get_number_of_degrees_of_freedom()`` per system (constraint-aware)."""
        return np.array([atoms.get_number_of_degrees_of_freedom() for atoms in self.atoms], dtype=float)

    def _own_calculators(self) -> None:
        """A BatchedCalculator per system (same model), so that each holds its own cached results."""
        seen: set[int] = set()
        for atoms in self.atoms:
            if atoms.calc is None or id(atoms.calc) in seen:
                atoms.calc = BatchedCalculator(self.model, device=self.device, dtype=self.dtype)
            seen.add(id(atoms.calc))

    # ------------------------------------------------------------------ device -> Atoms
    def refresh(
        self,
        positions: np.ndarray,
        velocities: np.ndarray | None,
        energy: np.ndarray,
        forces: np.ndarray,
        systems: Iterable[int],
        host: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Write host state (positions, velocities or None, energy ``[B]``, forces) into ``systems``.

        ``host`` holds the reported values of :meth:`report_tensors` (the model's
        other results, and with cell filters ``cell``, ``stress [B, 3, 3]`` and
        ``cell_strain``).

        Raises
        ------
        NonFiniteError
            Naming the systems (their index in the list) whose positions,
            velocities or energy went NaN or ±Inf, after the others were
            written; their ``Atoms`` keep their last finite state.
        """
        failures = []
        for b in systems:
            rows = self.rows(b)
            values = {"positions": positions[rows], "energy": energy[b : b + 1]}
            if velocities is not None and self.momenta:
                values["momenta"] = velocities[rows]
            bad = [name for name, value in values.items() if not np.isfinite(value).all()]
            if bad:
                failures.append(f"system {b} (atoms[{b}]): non-finite {', '.join(bad)}")
            else:
                self._write(b, positions, velocities, energy, forces, host)
        if failures:
            raise NonFiniteError(
                "; ".join(failures) + " (the run diverged: time step, temperature or a bad structure?)"
            )

    def _write(
        self,
        b: int,
        positions: np.ndarray,
        velocities: np.ndarray | None,
        energy: np.ndarray,
        forces: np.ndarray,
        host: dict[str, np.ndarray] | None = None,
    ) -> None:
        """System ``b``'s host state into its ``Atoms``."""
        atoms, rows = self.atoms[b], self.rows(b)
        stress = None
        if self.has_filters and host is not None:
            atoms.set_cell(host["cell"][b], scale_atoms=False)
            sync_filter(self.filters[b], host["cell_strain"][b])
            stress = host["stress"][b]
            self._cells[b] = atoms.cell.array.copy()
        atoms.set_positions(positions[rows], apply_constraint=False)
        if velocities is not None and self.momenta:
            atoms.set_momenta(velocities[rows] * atoms.get_masses()[:, None], apply_constraint=False)
        if self.batched:  # an ASE calculator caches what it just computed for these positions
            others = {
                name: host[name][rows if scope is Scope.ATOM else b]
                for name, scope in MODEL_RESULTS.items()
                if host is not None and name in host
            }
            self._install(atoms, float(energy[b]), forces[rows], stress, others)
        self._positions[b] = atoms.positions.copy()
        self._momenta[b] = atoms.get_momenta()

    @staticmethod
    def _install(
        atoms: Atoms,
        energy: float,
        forces: np.ndarray,
        stress: np.ndarray | None = None,
        others: dict[str, np.ndarray] | None = None,
    ) -> None:
        """Make ``energy``, (raw) ``forces``, ``stress`` and the model's ``others`` (``magmoms``, ...)
        the calculator's cached results now."""
        calc = atoms.calc
        if calc is None or not hasattr(calc, "results"):
            return
        results = {"energy": energy, "free_energy": energy, "forces": np.array(forces, dtype=float)}
        if stress is not None:
            results["stress"] = full_3x3_to_voigt_6_stress(stress)
        for name, value in (others or {}).items():
            if np.all(np.isfinite(value)):
                results[name] = np.array(value, dtype=float)
        implemented = set(getattr(calc, "implemented_properties", results))
        calc.atoms = atoms.copy()
        calc.results = {name: value for name, value in results.items() if name in implemented}

    # ------------------------------------------------------------------ Atoms -> device
    def pull_edits(self) -> bool:
        """Send host edits of positions (and, for MD, momenta) to the device; True if positions changed.

        Systems whose ``Atoms`` still hold what was last written are left as
        they are on the device (their ``Atoms`` may be older than the device).

        Raises
        ------
        ValueError
            When a system gained or lost atoms since the look-alike was built.
        BatchValidationError
            When edited positions or momenta are not finite (naming the system).
        """
        for b, atoms in enumerate(self.atoms):
            if len(atoms) != self.batch.counts[b]:
                raise ValueError(
                    f"atoms[{b}] has {len(atoms)} atoms, it had {self.batch.counts[b]} when this "
                    "dynamics was built: atoms were added or deleted; build a new one for the new system"
                )
        moved = [b for b, a in enumerate(self.atoms) if not np.array_equal(a.positions, self._positions[b])]
        strained = []  # cell edits reach the device for cell filters (MD look-alikes own their cells)
        if self.has_filters:
            strained = [
                b for b, a in enumerate(self.atoms) if not np.array_equal(a.cell.array, self._cells[b])
            ]
        if strained:
            cells = self.batch.cell.clone()
            for b in strained:
                cells[b] = torch.as_tensor(self.atoms[b].cell.array, dtype=cells.dtype)
                self._cells[b] = self.atoms[b].cell.array.copy()
            self.batch.cell = cells
        kicked = []
        if self.momenta:
            kicked = [
                b for b, a in enumerate(self.atoms) if not np.array_equal(a.get_momenta(), self._momenta[b])
            ]
        for name, edited in (("positions", moved), ("momenta", kicked)):
            for b in edited:
                array = self.atoms[b].positions if name == "positions" else self.atoms[b].get_momenta()
                if not np.isfinite(array).all():
                    raise BatchValidationError("edited to non-finite values", system=b, field=name)
        if moved:
            values = [self.atoms[b].positions for b in moved]
            self.batch.positions = self._replace_rows(self.batch.positions, moved, values)
        if kicked:
            values = [self.atoms[b].get_velocities() for b in kicked]
            self.batch.velocities = self._replace_rows(self.batch.velocities, kicked, values)
        for b in moved:
            self._positions[b] = self.atoms[b].positions.copy()
        for b in kicked:
            self._momenta[b] = self.atoms[b].get_momenta()
        return bool(moved or strained)

    def _replace_rows(
        self, tensor: torch.Tensor, systems: list[int], values: list[np.ndarray]
    ) -> torch.Tensor:
        rows = np.concatenate([np.arange(self.starts[b], self.starts[b + 1]) for b in systems])
        index = torch.as_tensor(rows, dtype=torch.long, device=tensor.device)
        source = torch.as_tensor(np.concatenate(values), dtype=tensor.dtype).to(tensor.device)
        return tensor.index_copy(0, index, source)
