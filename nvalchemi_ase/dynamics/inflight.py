"""Inflight batching: keep the device full while a long sequence of structures streams through.

``InflightSampler`` hands out structures in input order within an atom,
system and (optionally) neighbour-pair budget. ``run_inflight`` drives a
``FusedStage``: whenever systems finish (status = number of sub-stages), they
are written to the sinks and kept as results, the batch is compacted to the
systems still running, and new structures fill the freed room. ``system_id``
is each structure's index in the input, so every result maps back to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.data import MODEL_RESULTS, Batch, Scope
from nvalchemi_ase.data.convert import resolve_device, resolve_dtype
from nvalchemi_ase.dynamics.state import model_neighbor_lists
from nvalchemi_ase.neighbors import NeighborList

if TYPE_CHECKING:
    from nvalchemi_ase.dynamics.fused import FusedStage


def estimate_pairs(atoms: Atoms, cutoff: float) -> int:
    """Rough count of directed pairs within ``cutoff``: density × sphere volume (N(N−1) without pbc)."""
    n = len(atoms)
    if atoms.pbc.any() and atoms.cell.rank == 3:
        return math.ceil(n * n / atoms.get_volume() * 4.0 / 3.0 * math.pi * cutoff**3)
    return n * (n - 1)


class InflightSampler:
    """Structures from a (possibly long, possibly lazy) sequence, handed out within budgets.

    Parameters
    ----------
    structures
        Any iterable of ``ase.Atoms`` (read lazily, in order).
    max_atoms
        Most atoms on the device at once.
    max_systems
        Most systems on the device at once.
    max_pairs, cutoff
        Optional neighbour-pair budget, with ``cutoff`` (Å) for :func:`estimate_pairs`.
    device, dtype
        Where and in what precision new batches are built (default: CUDA when available; float64).
    ids
        The ``system_id`` of each structure, in input order (default: its position in
        ``structures``), e.g. its index in a larger input some structures were left out of.

    At least one of ``max_atoms`` and ``max_systems`` is required. A structure
    that alone exceeds a budget raises ``ValueError`` naming its index.
    """

    def __init__(
        self,
        structures: Iterable[Atoms],
        max_atoms: int | None = None,
        max_systems: int | None = None,
        max_pairs: int | None = None,
        cutoff: float | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        ids: Sequence[int] | None = None,
    ) -> None:
        if max_atoms is None and max_systems is None:
            raise ValueError("give max_atoms or max_systems (or both)")
        for name, value in (("max_atoms", max_atoms), ("max_systems", max_systems), ("max_pairs", max_pairs)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if max_pairs is not None and not (cutoff and cutoff > 0):
            raise ValueError("max_pairs needs a positive cutoff to estimate pairs")
        self.max_atoms = max_atoms
        self.max_systems = max_systems
        self.max_pairs = max_pairs
        self.cutoff = cutoff
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype)
        self._source: Iterator[Atoms] = iter(structures)
        self._next: tuple[int, Atoms] | None = None
        self._index = 0
        self._ids = None if ids is None else list(ids)
        self.handed_out = 0
        """How many structures ``take`` has handed out (a checkpoint stores it; see :meth:`skip`)."""
        self._advance()

    @property
    def exhausted(self) -> bool:
        """Whether every structure has been handed out."""
        return self._next is None

    def skip(self, count: int) -> None:
        """Pass over the next ``count`` structures (they were handed out before a checkpoint)."""
        for _ in range(count):
            if self._next is None:
                raise ValueError(f"cannot skip {count} structures: the input holds only {self.handed_out}")
            self._advance()
            self.handed_out += 1

    def _advance(self) -> None:
        atoms = next(self._source, None)
        self._next = None if atoms is None else (self._index, atoms)
        self._index += 1

    def _cost(self, index: int, atoms: Atoms) -> tuple[int, int]:
        pairs = estimate_pairs(atoms, self.cutoff) if self.max_pairs is not None and self.cutoff else 0
        if self.max_atoms is not None and len(atoms) > self.max_atoms:
            raise ValueError(
                f"structure {index} has {len(atoms)} atoms, more than max_atoms={self.max_atoms}"
            )
        if self.max_pairs is not None and pairs > self.max_pairs:
            raise ValueError(f"structure {index} needs ~{pairs} pairs, more than max_pairs={self.max_pairs}")
        return len(atoms), pairs

    def take(
        self, atoms_used: int = 0, systems_used: int = 0, pairs_used: int = 0
    ) -> list[tuple[int, Atoms]]:
        """The next structures (with their input index) that fit beside what is already running."""
        taken: list[tuple[int, Atoms]] = []
        while self._next is not None:
            index, atoms = self._next
            n_atoms, n_pairs = self._cost(index, atoms)
            fits = (
                (self.max_atoms is None or atoms_used + n_atoms <= self.max_atoms)
                and (self.max_systems is None or systems_used + 1 <= self.max_systems)
                and (self.max_pairs is None or pairs_used + n_pairs <= self.max_pairs)
            )
            if not fits:
                break
            taken.append((index, atoms))
            self.handed_out += 1
            atoms_used, systems_used, pairs_used = (
                atoms_used + n_atoms,
                systems_used + 1,
                pairs_used + n_pairs,
            )
            self._advance()
        return taken

    def batch(self, taken: Sequence[tuple[int, Atoms]]) -> Batch:
        """A batch of taken structures, ``system_id`` set to their input indices (or ``ids``)."""
        batch = Batch.from_atoms([atoms for _, atoms in taken], device=self.device, dtype=self.dtype)
        ids = [index if self._ids is None else self._ids[index] for index, _ in taken]
        batch.system_id = torch.as_tensor(ids, dtype=torch.long, device=self.device)
        return batch

    def pairs_of(self, batch: Batch) -> int:
        """The pair estimate of the systems in a batch (0 without a pair budget)."""
        if self.max_pairs is None or self.cutoff is None:
            return 0
        return sum(estimate_pairs(atoms, self.cutoff) for atoms in batch.to_atoms())


def run_inflight(
    fused: FusedStage,
    sampler: InflightSampler,
    sinks: Sequence[Any] = (),
    n_steps: int | None = None,
    on_finish: Callable[[int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    results: dict[int, Atoms] | None = None,
    *,
    batch: Batch | None = None,
) -> list[Atoms]:
    """Run ``fused`` over every structure of ``sampler``; finished ones are refilled.

    Returns the final structures (energy and forces attached, ``info`` with
    ``system_id`` and ``unconverged``) in input order. Finished systems are also
    written to each sink as they finish. ``n_steps`` caps the fused steps (then
    the systems still running are returned too, marked ``info["finished"] = False``).
    ``on_finish(total)`` is called with the number of finished systems whenever
    it grows, and ``on_step(atoms)`` after each step with the atoms it advanced
    (both host-side counts: no device sync), e.g. for a progress bar.
    ``results``, when given, is filled with each finished structure as it
    finishes (``system_id`` → Atoms), so a caller still holds them when the run
    is interrupted (Ctrl-C) before it returns.

    To continue a checkpointed run, pass the restored ``batch`` (already bound to
    ``fused``, see :func:`~nvalchemi_ase.dynamics.checkpoint.restore_checkpoint`),
    the finished ``results`` so far (by system id; filled as systems finish) and a
    sampler that has skipped the structures handed out before.
    """
    results = {} if results is None else results
    if batch is None:
        first = sampler.take()
        if not first:
            return [results[k] for k in sorted(results)]
        batch = fused.prime(sampler.batch(first))  # bind, state, forces
    current: Batch | None = batch
    taken = 0
    while current is not None and (n_steps is None or taken < n_steps):
        fused.step(current)
        taken += 1
        if on_step is not None:
            on_step(current.num_nodes)
        if fused.finished_any and fused.finished_count >= _refill_threshold(current):
            current = _refill(fused, current, sampler, sinks, results)
            if on_finish is not None:
                on_finish(len(results))
    if current is not None:  # the step cap came first
        finished = current.status == fused.exit_status  # finished, not yet refilled (a compaction waits)
        for sink in sinks:
            sink.write(current, mask=finished)
        _collect(current, finished, results, finished=True)
        _collect(current, ~finished, results, finished=False)
    return [results[k] for k in sorted(results)]


def _refill_threshold(batch: Batch) -> int:
    """Finished systems that make a refill worth its cost: a quarter of the batch (at least one).

    A refill has a fixed cost (the finished systems' results to the host, the
    new structures to the device, the neighbour lists' new rows and their
    halves), a few milliseconds on a CPU, while a finished system waiting in
    its slot costs a share of each step's force call. On the fused benchmark
    (512 structures, 64 slots, 2-core CPU) refilling at 16 finished systems
    took 3.0 s against 3.8 s at each one, with a plateau from 16 to 32.
    Finished systems take no update meanwhile.
    """
    return max(1, batch.num_graphs // 4)


def _refill(
    fused: FusedStage, batch: Batch, sampler: InflightSampler, sinks: Sequence[Any], results: dict[int, Atoms]
) -> Batch | None:
    """Write and keep the finished systems, then fill their room with new structures.

    New systems join without a force call of their own: they await their
    forces, which the next fused step computes with everyone else's. When the
    new systems have the finished ones' atom counts they take their slots in
    the same batch (the neighbour list sees only those systems moved and
    rebuilds them alone); otherwise the batch is compacted and the new
    systems appended, the neighbour lists keeping the pairs of the systems
    that stay.
    """
    finished = batch.status == fused.exit_status
    for sink in sinks:
        sink.write(batch, mask=finished)
    _collect(batch, finished, results, finished=True)
    done = finished.cpu().numpy()
    keep, freed = np.flatnonzero(~done), np.flatnonzero(done)
    counts = batch.counts
    used_pairs = sampler.pairs_of(batch.index_select(keep)) if keep.size and sampler.max_pairs else 0
    taken = sampler.take(int(counts[keep].sum()), int(keep.size), used_pairs)
    fresh = _awaiting_forces(fused, sampler.batch(taken), batch) if taken else None
    slots = _matching_slots(batch, freed, fresh)
    if fresh is not None and slots is not None:
        for neighbor_list in _neighbor_lists(fused):
            neighbor_list.carry()  # same layout: the skin test finds the replaced systems
        _put_into_slots(batch, slots, fresh)
        fused.adopt(batch)
        return batch
    for neighbor_list in _neighbor_lists(fused):
        neighbor_list.carry(keep)  # the systems that stay keep their pairs; only new ones are built
    remaining = batch.index_select(keep) if keep.size else None
    joined = fresh if remaining is None else remaining if fresh is None else Batch.cat([remaining, fresh])
    if joined is not None:
        fused.adopt(joined)
    return joined


def _awaiting_forces(fused: FusedStage, fresh: Batch, running: Batch) -> Batch:
    """New systems with the pipeline's state fields, awaiting their forces (placeholders until then)."""
    fused.init_state(fresh)
    fresh.awaiting_forces = torch.ones(fresh.num_graphs, dtype=torch.bool, device=fresh.device)
    present = set(fresh.field_names())
    for name in ("energy", "forces", "stress", *MODEL_RESULTS):  # computed at the next step
        if name in present or name not in running.field_names():
            continue
        value = getattr(running, name)
        scope = running.scope_of(name)
        leading = fresh.num_nodes if scope is Scope.ATOM else fresh.num_graphs
        zeros = value.new_zeros((leading, *value.shape[1:]))
        if name in MODEL_RESULTS:
            fresh.add_field(name, zeros, scope)
        else:
            setattr(fresh, name, zeros)
    return fresh


def _matching_slots(batch: Batch, freed: np.ndarray, fresh: Batch | None) -> np.ndarray | None:
    """Freed slots for the new systems, in their order, when they fill every freed slot atom for atom.

    None when the counts differ or some field cannot be written slot by slot
    (a field only one side has, or per-system state of another shape).
    """
    if fresh is None or fresh.num_graphs != freed.size:
        return None
    if sorted(batch.field_names()) != sorted(fresh.field_names()):
        return None
    for name in batch.field_names():
        if getattr(batch, name).shape[1:] != getattr(fresh, name).shape[1:]:
            return None
    open_slots: dict[int, list[int]] = {}
    for slot in freed[::-1]:
        open_slots.setdefault(int(batch.counts[slot]), []).append(int(slot))
    slots = []
    for count in fresh.counts:
        matching = open_slots.get(int(count))
        if not matching:
            return None
        slots.append(matching.pop())
    return np.asarray(slots, dtype=np.int64)


def _put_into_slots(batch: Batch, slots: np.ndarray, fresh: Batch) -> None:
    """Fresh system k replaces system ``slots[k]`` of ``batch`` (same atom count), field by field.

    New tensors (``index_copy``), never writes into the batch's: references
    held elsewhere keep their values, as everywhere in the engines.
    """
    rows = torch.as_tensor(slots, dtype=torch.long, device=batch.device)
    atoms = batch.atom_indices(slots)
    for name in batch.field_names():
        index = atoms if batch.scope_of(name) is Scope.ATOM else rows
        setattr(batch, name, getattr(batch, name).index_copy(0, index, getattr(fresh, name)))
    for slot, meta in zip(slots, fresh.meta, strict=True):
        batch.meta[int(slot)] = meta


def _neighbor_lists(fused: FusedStage) -> list[NeighborList]:
    """The neighbour lists kept by the pipeline's models and hooks (each once)."""
    found = {id(found): found for found in model_neighbor_lists(fused)}
    for engine in fused._hooked_engines():
        for hook in engine.hooks:
            owned = getattr(hook, "neighbor_list", None)
            if isinstance(owned, NeighborList):
                found.setdefault(id(owned), owned)
    return list(found.values())


def _collect(batch: Batch, systems: torch.Tensor, results: dict[int, Atoms], finished: bool) -> None:
    picked = np.flatnonzero(systems.cpu().numpy())
    if picked.size == 0:
        return
    chosen = batch.index_select(picked)
    ids = chosen.system_id.tolist()
    unconverged = chosen.unconverged.tolist()
    for atoms, system_id, flag in zip(chosen.to_atoms(), ids, unconverged, strict=True):
        atoms.info.update({"system_id": system_id, "unconverged": bool(flag), "finished": finished})
        results[system_id] = atoms
