"""``GPUBuffer``: system snapshots in storage preallocated on the device."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from nvalchemi_ase.data import FIELDS, Batch, Field, Kind, Scope, SystemMeta
from nvalchemi_ase.sinks.base import DataSink, SinkFullError, check_capacity


@dataclass(frozen=True)
class _Slot:
    """What the buffer holds for one field: scope, dtype and trailing shape."""

    scope: Scope
    dtype: torch.dtype
    shape: tuple[int, ...]


class GPUBuffer(DataSink):
    """Snapshots copied into tensors allocated once, on the device.

    At the first write the buffer allocates one tensor per field of that batch
    (custom fields included, each in its own dtype: float64, float32, long,
    bool), with room for ``capacity`` systems and ``capacity * max_atoms``
    atoms. Atoms are packed system after system, so ``read()`` takes leading
    slices. Writes copy with index operations (no loop over systems, no host
    sync when ``mask`` is ``None``); the atom counts and the per-system
    metadata are kept on the host.

    Parameters
    ----------
    capacity
        Most system snapshots held (an int >= 1).
    max_atoms
        Largest system accepted, in atoms; ``None`` means the largest system of
        the first write.
    device
        Where the buffer lives; ``None`` means the device of the first batch
        written. Works the same on CPU and CUDA.

    Raises
    ------
    SinkFullError
        From ``write``: more systems than the free slots, or a system with more
        than ``max_atoms`` atoms. Nothing is stored.
    ValueError
        From ``write``: a batch whose fields (names, dtypes or shapes) differ
        from those of the first write.
    """

    def __init__(
        self, capacity: int, max_atoms: int | None = None, device: torch.device | str | None = None
    ) -> None:
        self._capacity = check_capacity(capacity)
        self._max_atoms = None if max_atoms is None else check_capacity(max_atoms, "max_atoms")
        self._device = None if device is None else _checked_device(device)
        self._slots: dict[str, _Slot] = {}
        self._buffers: dict[str, torch.Tensor] = {}
        self._atom_counts = np.zeros(self._capacity, dtype=np.int64)
        self._meta: list[SystemMeta] = []
        self._size = 0
        self._num_atoms = 0

    # ------------------------------------------------------------------ sizes
    @property
    def capacity(self) -> int:
        """Most system snapshots held."""
        return self._capacity

    @property
    def max_atoms(self) -> int | None:
        """Largest system accepted (``None`` until the first write when not given)."""
        return self._max_atoms

    @property
    def device(self) -> torch.device | None:
        """Where the buffer lives (``None`` until the first write when not given)."""
        return self._device

    @property
    def buffers(self) -> dict[str, torch.Tensor]:
        """The preallocated tensors by field name (empty before the first write).

        Per-system fields have ``capacity`` rows, per-atom fields
        ``capacity * max_atoms``; only the leading ``len(self)`` systems (and
        their atoms) hold data. The dict is a copy, the tensors are not.
        """
        return dict(self._buffers)

    def __len__(self) -> int:
        return self._size

    # ------------------------------------------------------------------ write
    def _store(self, batch: Batch, systems: np.ndarray) -> None:
        counts = batch.counts[systems]
        max_atoms = self._max_atoms if self._max_atoms is not None else int(counts.max())
        too_big = np.flatnonzero(counts > max_atoms)
        if too_big.size:
            k = int(systems[too_big[0]])
            raise SinkFullError(
                f"GPUBuffer holds systems of at most max_atoms={max_atoms} atoms; "
                f"system {k} of the batch has {int(batch.counts[k])}"
            )
        slots = _slots_of(batch)
        if self._buffers:
            self._check_same_fields(slots)
        else:
            self._allocate(slots, max_atoms, batch.device)
        self._copy_in(batch, systems, counts)

    def _allocate(self, slots: dict[str, _Slot], max_atoms: int, device: torch.device) -> None:
        self._max_atoms = max_atoms
        self._device = device if self._device is None else self._device
        rows = {Scope.SYSTEM: self._capacity, Scope.ATOM: self._capacity * max_atoms}
        self._slots = slots
        self._buffers = {
            name: torch.zeros((rows[slot.scope], *slot.shape), dtype=slot.dtype, device=self._device)
            for name, slot in slots.items()
        }

    def _check_same_fields(self, slots: dict[str, _Slot]) -> None:
        if slots == self._slots:
            return
        missing = sorted(set(self._slots) - set(slots))
        extra = sorted(set(slots) - set(self._slots))
        changed = sorted(n for n in set(slots) & set(self._slots) if slots[n] != self._slots[n])
        details = [
            f"{n}: {self._slots[n].dtype}{list(self._slots[n].shape)} in the buffer, "
            f"{slots[n].dtype}{list(slots[n].shape)} written"
            for n in changed
        ]
        raise ValueError(
            "GPUBuffer fields are fixed at the first write; this batch differs: "
            f"missing {missing}, extra {extra}, changed [{'; '.join(details)}]"
        )

    def _copy_in(self, batch: Batch, systems: np.ndarray, counts: np.ndarray) -> None:
        """Copy the selected systems into the next free rows (one indexed copy per field)."""
        k, n = int(systems.size), int(counts.sum())
        everything = k == batch.num_graphs
        rows = None if everything else torch.as_tensor(systems, device=batch.device)
        atoms = None if everything else batch.atom_indices(systems)
        for name, buffer in self._buffers.items():
            value = getattr(batch, name)
            if self._slots[name].scope is Scope.ATOM:
                target, index = buffer[self._num_atoms : self._num_atoms + n], atoms
            else:
                target, index = buffer[self._size : self._size + k], rows
            target.copy_(value if index is None else value.index_select(0, index))
        self._atom_counts[self._size : self._size + k] = counts
        self._meta.extend(copy.deepcopy(batch.meta[s]) for s in systems)
        self._size += k
        self._num_atoms += n

    # ------------------------------------------------------------------ read
    def read(self) -> Batch:
        """Every stored snapshot, in write order, as one batch on the buffer's device.

        The tensors are copies of the filled rows, so later writes (after
        ``zero()`` or ``drain()``) do not change a batch already read.
        """
        if self._size == 0:
            raise self._empty_error()
        rows = {Scope.SYSTEM: self._size, Scope.ATOM: self._num_atoms}
        fields = {
            name: buffer[: rows[self._slots[name].scope]].clone() for name, buffer in self._buffers.items()
        }
        extra = {
            name: Field(slot.scope, _kind(slot.dtype), slot.shape, required=False)
            for name, slot in self._slots.items()
            if name not in FIELDS
        }
        meta = copy.deepcopy(self._meta)
        return Batch(self._atom_counts[: self._size].copy(), fields, meta, extra_fields=extra)

    def zero(self) -> None:
        """Forget every stored snapshot; the allocation (and its field layout) is kept."""
        self._size = 0
        self._num_atoms = 0
        self._meta = []


def _slots_of(batch: Batch) -> dict[str, _Slot]:
    return {
        name: _Slot(batch.scope_of(name), value.dtype, tuple(value.shape[1:]))
        for name in batch.field_names()
        for value in (getattr(batch, name),)
    }


def _kind(dtype: torch.dtype) -> Kind:
    if dtype.is_floating_point:
        return Kind.FLOAT
    return Kind.BOOL if dtype == torch.bool else Kind.INT


def _checked_device(device: torch.device | str) -> torch.device:
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device: not a torch device: {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    return resolved
