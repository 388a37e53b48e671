"""``Batch``: B systems with N atoms in total, as device tensors.

Per-atom fields are ``[N, ...]`` (atoms of system 0 first, then system 1, ...),
per-system fields ``[B, ...]``; ``batch_idx[N]`` maps atoms to systems and
``ptr[B+1]`` holds the offsets. Which fields exist and their scope is declared
once in :mod:`nvalchemi_ase.data.fields`; conversion to and from ``ase.Atoms``
lives beside this module in :mod:`nvalchemi_ase.data.convert`.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from nvalchemi_ase.data.errors import BatchValidationError
from nvalchemi_ase.data.fields import FIELDS, Field, Kind, Scope


@dataclass
class SystemMeta:
    """Host-side facts about one system that have no tensor form.

    Carried unchanged through slicing and joining so that ``to_atoms`` gives
    back what ``from_atoms`` was given.
    """

    info: dict[str, Any] = field(default_factory=dict)
    constraints: list[Any] = field(default_factory=list)
    """ASE constraints other than ``FixAtoms`` (which lives in ``atom_categories``)."""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    """Per-atom arrays of the Atoms that the batch has no field for."""
    explicit_masses: bool = False
    """Whether the Atoms carried a ``masses`` array (else ASE's defaults were used)."""
    explicit_momenta: bool = False
    """Whether the Atoms carried a ``momenta`` array."""
    fixatoms_slot: int | None = None
    """Where ``FixAtoms`` stood among the constraints, so it comes back in place."""
    celldisp: np.ndarray | None = None

    def copy(self) -> SystemMeta:
        """A deep copy, without ``copy.deepcopy``'s machinery when info, constraints and arrays are empty.

        Slicing copies every system's metadata (sinks, snapshots, inflight
        refills); most systems carry nothing beyond the flags and ``celldisp``.
        """
        if self.info or self.constraints or self.arrays:
            return copy.deepcopy(self)
        celldisp = None if self.celldisp is None else self.celldisp.copy()
        return dataclasses.replace(self, info={}, constraints=[], arrays={}, celldisp=celldisp)


IndexLike = int | slice | Sequence[int] | np.ndarray | torch.Tensor

FLOAT_DTYPES = (torch.float64, torch.float32)
"""The float dtypes a batch may hold (the kernels and models compute in these)."""

_KIND_DTYPES = {Kind.INT: torch.long, Kind.BOOL: torch.bool}


def check_float_dtype(dtype: Any) -> torch.dtype:
    """``dtype`` if it is float64 or float32, else :class:`BatchValidationError`."""
    if dtype not in FLOAT_DTYPES:
        raise BatchValidationError(
            f"dtype must be a torch float type the kernels compute in "
            f"(torch.float64 or torch.float32), got {dtype!r}"
        )
    return dtype


def default_device() -> torch.device:
    """CUDA when it is available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Batch:
    """B atomistic systems held as tensors on one device.

    Build one with :meth:`Batch.from_atoms`; get ``ase.Atoms`` back with
    :meth:`to_atoms`. Fields are attributes (``batch.positions``); fields that
    are not yet computed (``forces``, ``energy``, ``stress``) read as ``None``.

    Parameters
    ----------
    counts
        Number of atoms of each system, ``[B]`` (host integers).
    fields
        Tensors by field name, each with the leading dimension of its scope.
    meta
        Host metadata, one per system (defaults to empty).
    extra_fields
        Declarations of custom fields beyond :data:`~nvalchemi_ase.data.fields.FIELDS`.
    """

    def __init__(
        self,
        counts: Sequence[int] | np.ndarray,
        fields: dict[str, torch.Tensor],
        meta: list[SystemMeta] | None = None,
        extra_fields: dict[str, Field] | None = None,
    ) -> None:
        counts_np = np.asarray(counts, dtype=np.int64).reshape(-1)
        if counts_np.size == 0:
            raise BatchValidationError("a batch needs at least one system")
        object.__setattr__(self, "_counts", counts_np)
        object.__setattr__(self, "_num_nodes", int(counts_np.sum()))
        object.__setattr__(self, "_specs", {**FIELDS, **(extra_fields or {})})
        object.__setattr__(self, "_data", {})
        object.__setattr__(self, "meta", meta if meta is not None else [SystemMeta() for _ in counts_np])
        if len(self.meta) != counts_np.size:
            raise BatchValidationError(f"{len(self.meta)} metadata entries for {counts_np.size} systems")
        positions = fields["positions"]
        if not isinstance(positions, torch.Tensor):
            raise BatchValidationError(
                f"expected a torch.Tensor, got {type(positions).__name__}", field="positions"
            )
        device = positions.device
        object.__setattr__(self, "_float_dtype", positions.dtype)
        if positions.dtype not in FLOAT_DTYPES:
            raise BatchValidationError(
                f"dtype {positions.dtype}: a batch holds torch.float64 or torch.float32", field="positions"
            )
        ptr = torch.zeros(counts_np.size + 1, dtype=torch.long)
        ptr[1:] = torch.as_tensor(np.cumsum(counts_np))
        object.__setattr__(self, "ptr", ptr.to(device))
        object.__setattr__(  # from the host counts: no device kernel (repeat_interleave sizes on the host)
            self,
            "batch_idx",
            torch.as_tensor(np.repeat(np.arange(counts_np.size), counts_np)).to(device),
        )
        self.positions = positions
        for name, value in fields.items():
            if name != "positions":
                setattr(self, name, value)
        missing = [name for name, spec in self._specs.items() if spec.required and name not in self._data]
        if missing:
            raise BatchValidationError(f"missing required fields {missing}")

    # ------------------------------------------------------------------ fields
    neighbors: Any = None
    """The pairs a :class:`~nvalchemi_ase.hooks.NeighborListHook` put on the batch for the current
    compute (a :class:`~nvalchemi_ase.neighbors.Neighbors`), else None (not a field)."""

    # A field's tensor is kept twice: in ``_data`` (the fields, in order) and in the instance's
    # ``__dict__``, so that reading ``batch.positions`` is a plain attribute lookup, not a call of
    # ``__getattr__`` (which now runs only for fields not set: they read as None).
    def __getattr__(self, name: str) -> Any:
        specs = self.__dict__.get("_specs", FIELDS)
        if name in specs:
            return None
        raise AttributeError(f"'Batch' has no field or attribute '{name}'")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._specs:
            object.__setattr__(self, name, value)
            return
        if value is None:
            if self._specs[name].required:
                raise BatchValidationError("a required field cannot be removed", field=name)
            self._data.pop(name, None)
            self.__dict__.pop(name, None)
            return
        self.__dict__[name] = self._data[name] = self._checked(name, value)

    def assign(self, name: str, value: torch.Tensor) -> None:
        """Set the declared field ``name`` without the checks of ``batch.name = value``.

        The engines' hot path: for a tensor made from the batch's own fields
        (``empty_like(batch.positions)``, a kernel's output over them) or
        already checked (a model's results after
        :func:`~nvalchemi_ase.models.evaluate`), whose shape, dtype and device
        are right by construction. Anything from a user goes through attribute
        assignment, which names the field at fault.
        """
        self.__dict__[name] = self._data[name] = value

    def _checked(self, name: str, value: torch.Tensor) -> torch.Tensor:
        spec = self._specs[name]
        if not isinstance(value, torch.Tensor):
            raise BatchValidationError(f"expected a torch.Tensor, got {type(value).__name__}", field=name)
        leading = self.num_nodes if spec.scope is Scope.ATOM else self.num_graphs
        expected = (leading, *spec.shape)
        if tuple(value.shape) != expected:
            raise BatchValidationError(f"shape {tuple(value.shape)}, expected {expected}", field=name)
        self._check_dtype(name, spec, value.dtype)
        if value.device != self.batch_idx.device:
            raise BatchValidationError(
                f"on device {value.device}, the batch is on {self.batch_idx.device}", field=name
            )
        return value

    def _check_dtype(self, name: str, spec: Field, dtype: torch.dtype) -> None:
        """Built-in fields: the batch's float dtype, ``torch.long`` or ``torch.bool``, exactly.

        Custom float fields keep their own float dtype (a float32 weight in a
        float64 batch); custom integer or boolean ones are not checked.
        """
        if name not in FIELDS:
            if spec.kind is Kind.FLOAT and not dtype.is_floating_point:
                raise BatchValidationError(f"dtype {dtype} is not a float type", field=name)
            return
        wanted = self._float_dtype if spec.kind is Kind.FLOAT else _KIND_DTYPES[spec.kind]
        if dtype != wanted:
            what = "the batch's float dtype" if spec.kind is Kind.FLOAT else f"{spec.kind.value} fields"
            raise BatchValidationError(f"dtype {dtype}, expected {wanted} ({what})", field=name)

    def add_field(self, name: str, value: torch.Tensor, scope: Scope, kind: Kind | None = None) -> None:
        """Declare and set a custom field (its scope decides how it is sliced and joined).

        A field already declared with this scope, kind and trailing shape is
        only set (with the checks of attribute assignment): an engine that
        stores a model's per-atom ``energies`` every step declares it once.
        """
        if kind is None:
            kind = (
                Kind.FLOAT
                if value.is_floating_point()
                else (Kind.BOOL if value.dtype == torch.bool else Kind.INT)
            )
        spec = self._specs.get(name)
        if (
            spec is not None
            and name not in FIELDS
            and spec.scope is scope
            and spec.kind is kind
            and spec.shape == tuple(value.shape[1:])
        ):
            setattr(self, name, value)
            return
        if name in FIELDS or (name in self.__dict__ and name not in self._specs) or hasattr(type(self), name):
            raise BatchValidationError("the name is taken by a built-in field or attribute", field=name)
        self._specs[name] = Field(scope, kind, tuple(value.shape[1:]), required=False)
        try:
            setattr(self, name, value)
        except BatchValidationError:
            del self._specs[name]  # nothing declared when the value is refused
            raise

    def fields_held(self) -> dict[str, torch.Tensor]:
        """The field tensors as they are now, by reference (no copy).

        Fields are replaced on assignment, never written in place, so these
        stay the values of this moment; :meth:`put_back` restores them (an
        interrupted step leaves the batch as it was before the step).
        """
        return dict(self._data)

    def put_back(self, held: dict[str, torch.Tensor]) -> None:
        """Make the fields exactly those of :meth:`fields_held` (fields added since are dropped)."""
        for name in self._data:
            del self.__dict__[name]
        self._data.clear()
        self._data.update(held)
        self.__dict__.update(held)

    def field_names(self) -> list[str]:
        """Names of the fields this batch holds now."""
        return list(self._data)

    def scope_of(self, name: str) -> Scope:
        """The declared scope of a field."""
        return self._specs[name].scope

    # ------------------------------------------------------------------ sizes
    @property
    def num_nodes(self) -> int:
        """Total number of atoms, N."""
        return self._num_nodes

    @property
    def num_graphs(self) -> int:
        """Number of systems, B."""
        return int(self._counts.size)

    def __len__(self) -> int:
        return self.num_graphs

    @property
    def counts(self) -> np.ndarray:
        """Atoms per system, ``[B]``, on the host (a copy)."""
        return self._counts.copy()

    @property
    def device(self) -> torch.device:
        return self.batch_idx.device  # every field's device (checked on assignment)

    @property
    def dtype(self) -> torch.dtype:
        return self._float_dtype  # the positions' dtype (checked on assignment)

    def __repr__(self) -> str:
        return (
            f"Batch(num_graphs={self.num_graphs}, num_nodes={self.num_nodes}, "
            f"device={self.device}, dtype={self.dtype}, fields={self.field_names()})"
        )

    # ------------------------------------------------------------------ moves
    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Batch:
        """A copy on ``device`` with float fields in ``dtype`` (either may be None: unchanged)."""
        if dtype is not None:
            check_float_dtype(dtype)
        fields = {}
        for name, value in self._data.items():
            cast = dtype if (dtype is not None and self._specs[name].kind is Kind.FLOAT) else None
            fields[name] = value.to(device=device, dtype=cast, copy=True)
        return self._rebuilt(self._counts, fields, [m.copy() for m in self.meta])

    def clone(self) -> Batch:
        """A deep copy (tensors and metadata)."""
        return self.to()

    def _rebuilt(self, counts: np.ndarray, fields: dict[str, torch.Tensor], meta: list[SystemMeta]) -> Batch:
        extra = {name: spec for name, spec in self._specs.items() if name not in FIELDS}
        return Batch(counts, fields, meta, extra_fields=extra)

    # ------------------------------------------------------------------ slicing
    def _system_indices(self, index: IndexLike) -> np.ndarray:
        if isinstance(index, torch.Tensor):
            index = index.detach().cpu().numpy()
        if isinstance(index, slice):
            return np.arange(self.num_graphs)[index]
        array = np.asarray(index)
        if array.size == 0:
            return np.zeros(0, dtype=np.int64)
        if array.dtype == bool:
            if array.shape != (self.num_graphs,):
                raise IndexError(f"boolean index of shape {array.shape} for {self.num_graphs} systems")
            return np.flatnonzero(array)
        if array.dtype.kind not in "iu":
            raise IndexError(f"system index must be integers or booleans, got dtype {array.dtype}")
        array = array.reshape(-1).astype(np.int64)
        if array.size and (array.max() >= self.num_graphs or array.min() < -self.num_graphs):
            raise IndexError(f"system index out of range for {self.num_graphs} systems")
        return np.where(array < 0, array + self.num_graphs, array)

    def atom_indices(self, systems: np.ndarray) -> torch.Tensor:
        """Indices of the atoms of ``systems`` (in that order), on the batch's device."""
        starts = np.cumsum(self._counts) - self._counts
        counts = self._counts[systems]
        new_starts = np.cumsum(counts) - counts
        flat = np.repeat(starts[systems] - new_starts, counts) + np.arange(int(counts.sum()))
        return torch.as_tensor(flat, dtype=torch.long, device=self.device)

    def index_select(self, index: IndexLike) -> Batch:
        """A new batch of the selected systems, in the order given.

        ``index`` may be an int, a slice, a list or array of ints, or a boolean mask
        over systems (numpy or torch). An empty selection raises ``IndexError``.
        """
        systems = self._system_indices(index)
        if systems.size == 0:
            raise IndexError("empty selection: a batch needs at least one system")
        atoms = self.atom_indices(systems)
        rows = torch.as_tensor(systems, dtype=torch.long, device=self.device)
        fields = {
            name: value.index_select(0, atoms if self._specs[name].scope is Scope.ATOM else rows)
            for name, value in self._data.items()
        }
        meta = [self.meta[s].copy() for s in systems]
        return self._rebuilt(self._counts[systems], fields, meta)

    def __getitem__(self, index: IndexLike) -> Batch:
        return self.index_select(index)

    @classmethod
    def cat(cls, batches: Sequence[Batch]) -> Batch:
        """Join batches system after system (same device and float dtype).

        Optional fields (``forces``, ``energy``, ``stress``, custom fields) are kept
        only when every batch has them. Per-system custom fields whose trailing
        shapes differ (state padded to the largest system, e.g. BFGS Hessians)
        are zero-padded to the largest shape.
        """
        if not batches:
            raise BatchValidationError("nothing to concatenate")
        first = batches[0]
        for k, other in enumerate(batches[1:], start=1):
            if other.device != first.device or other.dtype != first.dtype:
                raise BatchValidationError(
                    f"batch {k} is on {other.device}/{other.dtype}, batch 0 on {first.device}/{first.dtype}"
                )
        names = [n for n in first.field_names() if all(n in b._data for b in batches)]
        fields = {n: torch.cat(_padded([b._data[n] for b in batches], n), dim=0) for n in names}
        counts = np.concatenate([b._counts for b in batches])
        meta = [m.copy() for b in batches for m in b.meta]
        extra = {
            name: Field(spec.scope, spec.kind, tuple(fields[name].shape[1:]), required=False)
            for name, spec in first._specs.items()
            if name not in FIELDS and name in fields
        }
        return Batch(counts, fields, meta, extra_fields=extra)

    # ------------------------------------------------------------------ ASE
    @classmethod
    def from_atoms(
        cls,
        atoms: Any,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> Batch:
        """Build a batch from one ``ase.Atoms`` or a list of them.

        See :func:`nvalchemi_ase.data.convert.atoms_to_batch`.
        """
        from nvalchemi_ase.data.convert import atoms_to_batch

        return atoms_to_batch(atoms, device=device, dtype=dtype)

    def to_atoms(self) -> list[Any]:
        """The systems as a list of ``ase.Atoms``; see :func:`~nvalchemi_ase.data.convert.batch_to_atoms`."""
        from nvalchemi_ase.data.convert import batch_to_atoms

        return batch_to_atoms(self)


def _padded(parts: list[torch.Tensor], name: str) -> list[torch.Tensor]:
    """Zero-pad trailing dimensions to the largest among ``parts`` (built-in fields never differ)."""
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) == 1:
        return parts
    if name in FIELDS or len({len(s) for s in shapes}) != 1:
        raise BatchValidationError(f"cannot join: trailing shapes {sorted(shapes)} differ", field=name)
    widest = tuple(max(sizes) for sizes in zip(*shapes, strict=True))
    out = []
    for part in parts:
        grown = part.new_zeros((part.shape[0], *widest))
        grown[(slice(None), *(slice(0, n) for n in part.shape[1:]))] = part
        out.append(grown)
    return out
