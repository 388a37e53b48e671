"""``AutogradModel``: a user's torch energy module made into a full model by automatic differentiation.

The module computes per-system energies from an :class:`AtomGraph` (positions,
numbers, cell, pbc and the neighbour pairs as an edge list, MACE's layout). The
adapter builds the graph from the batch and its Verlet-skin neighbour list and
differentiates the energy:

* forces ``F = −∂E/∂r``;
* stress ``σ = (1/V) ∂E/∂ε``: every system is deformed by its own symmetric
  strain ``ε`` (positions ``r → r(1 + ε)``, cell rows ``h → h(1 + ε)``, so the
  image shifts follow), and the derivative is taken at ``ε = 0``
  (Knuth et al., Comput. Phys. Commun. 190, 33 (2015), doi:10.1016/j.cpc.2014.12.023).

One backward pass gives both, for all systems at once (on CPU, for one group of systems
at a time when ``cpu_edges_per_pass`` is set: see there).
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models.atom_graph import AtomGraph, GraphSpan, cast_graph, strained_graph
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, BatchedModel, ModelOutputError, volumes
from nvalchemi_ase.neighbors import NeighborList, Neighbors
from nvalchemi_ase.neighbors.graph import angle_triplets, reverse_edges
from nvalchemi_ase.ops import segment_broadcast


class AutogradModel(BatchedModel):
    """A full model (energy, forces, stress) from a module that computes energies only.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` whose ``forward(graph: AtomGraph)`` returns the
        energy of each system, ``[B]`` or ``[B, 1]`` eV, differentiably in
        ``graph.positions`` / ``graph.edge_vectors``; or a dict with that under
        ``"energy"``, optionally per-atom energies ``"energies" [N]`` and any
        other per-atom ``[N, ...]`` or per-system ``[B, ...]`` outputs (magnetic
        moments, charges), which are returned detached beside the energy.
    cutoff
        Å, the module's interaction range: edges are the pairs closer than it.
        ``None`` reads the module's own ``cutoff`` attribute.
    skin
        Å, the neighbour list's reuse margin (keyword only).
    max_neighbors
        Room per atom in the neighbour list (``None``: sized automatically).
    compute_stress
        Whether ``stress`` is offered (it costs a strain derivative in the same backward pass).
    dtype
        The float dtype the module computes in (``None``: the batch's). A float32
        network inside a float64 batch gets its inputs cast at its boundary and
        its outputs cast back; the derivatives flow through the casts.
    reverse_edges
        Whether the graph carries ``reverse_edge``.
    angle_cutoff
        Å: the graph carries the angle ``triplets`` of edges shorter than this.
    angle_first_at_cutoff
        Whether a triplet's first edge may also be exactly ``angle_cutoff`` long
        (CHGNet's rule; see :func:`~nvalchemi_ase.neighbors.graph.angle_triplets`).
    properties
        Extra properties the module returns (``"energies"``, ``"magmoms"``, ...),
        added to ``implemented_properties``.
    cpu_edges_per_pass
        On CPU, run the module (forward and backward) on consecutive groups of
        whole systems of about this many edges each, instead of on the whole
        batch at once (``None``: always one pass). Results are the same; the
        point is memory: a network's per-edge features of a large batch run to
        hundreds of megabytes per tensor, which the C allocator hands back to
        the operating system when freed, so every pass pays to have them
        mapped and zeroed again (SevenNet on 32 structures: 1.9x the time of
        the same structures in passes of about 3,000 edges, one thread). A
        system is never split, so a group holds at most one system more than
        the limit. With several passes and ``torch.get_num_threads()`` above
        one, the passes run side by side, one per thread, each on one torch
        thread: as fast as torch's own threads on an idle machine, and much
        faster when other processes share the cores (torch's threads then wait
        for each other at every operation). Each pass is computed the same way
        whatever the thread count, so results do not depend on it. Not used on
        other devices.
    flush_denormals
        On CPU, compute the module with subnormal floats flushed to zero
        (``None``: when the module computes in a dtype narrower than float64).
        Float32 networks make subnormals (a gate's sigmoid or a smooth cutoff
        far into its tail), and a CPU takes a slow path for every one: CHGNet
        on 32 structures, one thread, took 3.3 s with them and 2.0 s flushed.
        A flushed value is below 1.2e-38, far under float32's round-off of
        any energy or force. The setting belongs to a thread, so the module
        then runs on threads of ours that keep it; the caller's thread is not
        touched. Not used on other devices.

    Notes
    -----
    Sizing the edge list costs one device→host sync per evaluation (the pairs
    closer than the cutoff are compacted out of the padded neighbour matrix);
    an ML potential's own cost dwarfs it. Outputs are detached, nothing
    requires grad afterwards, and the batch's tensors are never marked.
    Stress is NaN for systems whose cell does not span 3D. Only the module's
    energy is differentiated: a module with its own force head should have it
    removed (the pretrained adapters do), or both would run.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        cutoff: float | None = None,
        *,
        skin: float = 0.5,
        max_neighbors: int | None = None,
        compute_stress: bool = True,
        dtype: torch.dtype | None = None,
        reverse_edges: bool = False,
        angle_cutoff: float | None = None,
        angle_first_at_cutoff: bool = False,
        properties: Sequence[str] = (),
        cpu_edges_per_pass: int | None = None,
        flush_denormals: bool | None = None,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"AutogradModel: module must be a torch.nn.Module, got {type(module).__name__}")
        cutoff = _module_cutoff(module) if cutoff is None else cutoff
        if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not cutoff > 0.0:
            raise ValueError(f"AutogradModel: cutoff must be a positive number of Å, got {cutoff!r}")
        if not isinstance(skin, int | float) or not skin >= 0.0:
            raise ValueError(f"AutogradModel: skin must be non-negative, got {skin!r}")
        if not isinstance(compute_stress, bool):
            raise TypeError(f"AutogradModel: compute_stress must be a bool, got {compute_stress!r}")
        if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise TypeError(f"AutogradModel: dtype must be a torch float dtype or None, got {dtype!r}")
        if angle_cutoff is not None and not 0.0 < angle_cutoff <= cutoff:
            raise ValueError(
                f"AutogradModel: angle_cutoff must be in (0, cutoff={cutoff}] Å, got {angle_cutoff!r}"
            )
        if cpu_edges_per_pass is not None and (
            isinstance(cpu_edges_per_pass, bool)
            or not isinstance(cpu_edges_per_pass, int)
            or cpu_edges_per_pass < 1
        ):
            raise ValueError(
                "AutogradModel: cpu_edges_per_pass must be a positive integer or None, "
                f"got {cpu_edges_per_pass!r}"
            )
        if flush_denormals is not None and not isinstance(flush_denormals, bool):
            raise TypeError(f"AutogradModel: flush_denormals must be a bool or None, got {flush_denormals!r}")
        super().__init__()
        self.module = module
        self.flush_denormals = flush_denormals
        self.cutoff = float(cutoff)
        self.cpu_edges_per_pass = cpu_edges_per_pass
        self.skin = float(skin)
        self.max_neighbors = max_neighbors
        self.compute_stress = compute_stress
        self.dtype = dtype
        self.reverse_edges = reverse_edges
        self.angle_cutoff = None if angle_cutoff is None else float(angle_cutoff)
        self.angle_first_at_cutoff = bool(angle_first_at_cutoff)
        self.implemented_properties = (
            ("energy", "free_energy", "forces")
            + (("stress",) if compute_stress else ())
            + tuple(p for p in properties if p not in ("energy", "free_energy", "forces", "stress"))
        )
        self.neighbor_list = NeighborList(self.cutoff, skin=self.skin, max_neighbors=max_neighbors)

    def todict(self) -> dict[str, Any]:
        return {
            "module": type(self.module).__name__,
            "cutoff": self.cutoff,
            "skin": self.skin,
            "max_neighbors": self.max_neighbors,
            "compute_stress": self.compute_stress,
            "dtype": None if self.dtype is None else str(self.dtype).removeprefix("torch."),
            "angle_cutoff": self.angle_cutoff,
            "angle_first_at_cutoff": self.angle_first_at_cutoff,
            "cpu_edges_per_pass": self.cpu_edges_per_pass,
            "flush_denormals": self.flush_denormals,
        }

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        neighbors = self.neighbors(batch)
        edge_index, unit_shifts = self.edges(batch, neighbors)
        extras = self._graph_extras(batch, edge_index, unit_shifts)
        want_stress = self.compute_stress and "stress" in properties
        whole = GraphSpan.of(batch, edge_index, unit_shifts, **extras)
        passes = self._run_passes(self._passes(whole), want_stress, self._flushes(batch))
        energy, forces, strain_gradient, others = _joined(passes)
        poisoned = neighbors.overflow  # incomplete pair sets must not pass for results
        atom_poisoned = segment_broadcast(poisoned, batch.batch_idx)
        outputs = {
            "energy": torch.where(poisoned.unsqueeze(1), torch.nan, energy.unsqueeze(1)),
            "forces": torch.where(atom_poisoned.unsqueeze(1), torch.nan, -forces),
        }
        if strain_gradient is not None:
            volume = volumes(batch.cell).view(-1, 1, 1)
            stress = torch.where(volume > 0, strain_gradient / volume, torch.nan)
            outputs["stress"] = torch.where(poisoned.view(-1, 1, 1), torch.nan, stress)
        for key, value in others.items():
            value = value.detach().to(batch.dtype) if value.is_floating_point() else value.detach()
            if value.is_floating_point() and value.shape[0] in (batch.num_nodes, batch.num_graphs):
                mask = atom_poisoned if value.shape[0] == batch.num_nodes else poisoned
                value = torch.where(mask.view(-1, *([1] * (value.dim() - 1))), torch.nan, value)
            outputs[key] = value
        return outputs

    def _flushes(self, batch: Batch) -> bool:
        """Whether this evaluation runs with subnormals flushed (``flush_denormals``, on CPU only)."""
        if batch.positions.device.type != "cpu":
            return False
        if self.flush_denormals is not None:
            return self.flush_denormals
        return (batch.dtype if self.dtype is None else self.dtype).itemsize < 8

    def _run_passes(self, spans: list[GraphSpan], want_stress: bool, flush: bool) -> list[_Pass]:
        """Each span's :meth:`_differentiate`: in turn, or, with several spans and torch threads,
        side by side on a pool of as many threads, each pass on one torch thread. Flushing
        subnormals, even one span goes to a (one-thread) pool whose thread is set to flush."""
        threads_here = torch.get_num_threads()
        side_by_side = min(threads_here, len(spans))
        if side_by_side < 2 and not flush:
            return [self._differentiate(span, want_stress) for span in spans]
        torch_threads = 1 if side_by_side >= 2 else threads_here
        pool = _pass_threads(max(side_by_side, 1), flush)
        try:
            return list(
                pool.map(self._pass_on, spans, itertools.repeat(want_stress), itertools.repeat(torch_threads))
            )
        finally:
            # a thread's own count is its own, but torch also keeps the last count set anywhere
            # as the count for threads not yet started: put the caller's back
            torch.set_num_threads(threads_here)

    def _pass_on(self, span: GraphSpan, want_stress: bool, torch_threads: int) -> _Pass:
        torch.set_num_threads(torch_threads)  # this pool thread's own setting
        return self._differentiate(span, want_stress)

    def _differentiate(self, span: GraphSpan, want_stress: bool) -> _Pass:
        """The module's energy of ``span`` and its derivatives (one forward and one backward pass)."""
        with torch.enable_grad():
            positions = span.positions.detach().requires_grad_(True)
            strain = torch.zeros_like(span.cell).requires_grad_(want_stress)
            graph = strained_graph(span, positions, strain)
            energy, others = self._energy(cast_graph(graph, self.dtype), span)
            inputs = (positions, strain) if want_stress else (positions,)
            gradients = _gradients(energy, inputs)
        return _Pass(energy.detach(), gradients[0], gradients[1] if want_stress else None, others)

    def _passes(self, whole: GraphSpan) -> list[GraphSpan]:
        """``whole`` as one span, or on CPU cut into groups of whole systems of about
        ``cpu_edges_per_pass`` edges (one device→host copy of the systems' edge offsets)."""
        limit = self.cpu_edges_per_pass
        if limit is None or whole.positions.device.type != "cpu" or whole.edge_index.shape[1] <= limit:
            return [whole]
        sender = whole.edge_index[0]
        # Edges are sorted by sender, and so are the triplets (grouped by the sender of their first edge).
        edge_start = torch.searchsorted(sender, whole.ptr)
        offsets = [whole.ptr, edge_start]
        if whole.triplets is not None:
            offsets.append(torch.searchsorted(sender[whole.triplets[:, 0]], whole.ptr))
        atoms, edges, *triplets = torch.stack(offsets).numpy()
        group = edges[:-1] // limit  # a system goes with the pass its first edge falls into
        cuts = [0, *(np.flatnonzero(np.diff(group)) + 1).tolist(), whole.num_graphs]
        return [
            whole.part(
                (first, last),
                (int(atoms[first]), int(atoms[last])),
                (int(edges[first]), int(edges[last])),
                (int(triplets[0][first]), int(triplets[0][last])) if triplets else None,
            )
            for first, last in itertools.pairwise(cuts)
        ]

    def edges(self, batch: Batch, neighbors: Neighbors) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index [2, E]`` and ``unit_shifts [E, 3]`` of the pairs closer than the cutoff (one sync)."""
        with torch.no_grad():
            vectors = neighbors.vectors(batch.positions.detach())
            r2 = torch.einsum("nkd,nkd->nk", vectors, vectors)
            keep = (neighbors.mask & (r2 < self.cutoff**2)).reshape(-1).nonzero().squeeze(1)
            edge_index = torch.stack([neighbors.i[keep], neighbors.j[keep]])
            return edge_index, neighbors.pair_shifts[keep]

    def _graph_extras(
        self, batch: Batch, edge_index: torch.Tensor, unit_shifts: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        extras: dict[str, torch.Tensor] = {}
        with torch.no_grad():
            if self.reverse_edges:
                extras["reverse_edge"] = reverse_edges(edge_index, unit_shifts, batch.num_nodes)
            if self.angle_cutoff is not None:
                sender, receiver = edge_index
                shifts = torch.einsum(
                    "ed,edc->ec", unit_shifts.to(batch.dtype), batch.cell[batch.batch_idx[sender]]
                )
                vectors = batch.positions[receiver] - batch.positions[sender] + shifts
                extras["triplets"] = angle_triplets(
                    edge_index,
                    vectors.norm(dim=1),
                    self.angle_cutoff,
                    first_at_cutoff=self.angle_first_at_cutoff,
                )
        return extras

    def _energy(self, graph: AtomGraph, batch: GraphSpan) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        returned = self.module(graph)
        others: dict[str, torch.Tensor] = {}
        energy: Any = returned
        if isinstance(returned, dict):
            others = {k: v for k, v in returned.items() if k != "energy" and isinstance(v, torch.Tensor)}
            energy = returned.get("energy")
        num_systems = batch.num_graphs
        if not isinstance(energy, torch.Tensor) or energy.reshape(-1).shape != (num_systems,):
            shape = tuple(energy.shape) if isinstance(energy, torch.Tensor) else type(energy).__name__
            raise ModelOutputError(
                f"module {type(self.module).__name__} returned energy {shape}, "
                f"expected [{num_systems}] or [{num_systems}, 1] (one per system)"
            )
        if "energies" in others and others["energies"].reshape(-1).shape != (batch.num_nodes,):
            raise ModelOutputError(
                f"module {type(self.module).__name__} returned energies {tuple(others['energies'].shape)}, "
                f"expected [{batch.num_nodes}] (one per atom)"
            )
        if "energies" in others:
            others["energies"] = others["energies"].reshape(-1)
        return energy.reshape(-1).to(batch.dtype), others

    def __repr__(self) -> str:
        return (
            f"AutogradModel({type(self.module).__name__}, cutoff={self.cutoff}, skin={self.skin}, "
            f"compute_stress={self.compute_stress}, dtype={self.dtype})"
        )


def _module_cutoff(module: torch.nn.Module) -> float:
    """The module's own ``cutoff`` (a number or a one-element tensor), or a clear error."""
    value = getattr(module, "cutoff", None)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(
        f"AutogradModel: pass cutoff= (Å); module {type(module).__name__} has no numeric 'cutoff' attribute"
    )


@functools.cache
def _pass_threads(count: int, flush: bool) -> ThreadPoolExecutor:
    """``count`` threads for passes; with ``flush``, each flushes subnormals to zero (a per-thread
    setting, which the OpenMP threads torch starts from such a thread inherit: tested)."""
    initializer = functools.partial(torch.set_flush_denormal, True) if flush else None
    return ThreadPoolExecutor(count, thread_name_prefix="nvalchemi_ase-passes", initializer=initializer)


# a forked child has none of its parent's threads: the parent's pools there would take work and never run it
os.register_at_fork(after_in_child=_pass_threads.cache_clear)


class _Pass(NamedTuple):
    """One pass's results: energy ``[B]``, ``∂E/∂r [N, 3]``, ``∂E/∂ε [B, 3, 3]`` (or None), other outputs."""

    energy: torch.Tensor
    gradient: torch.Tensor
    strain_gradient: torch.Tensor | None
    others: dict[str, torch.Tensor]


def _joined(passes: list[_Pass]) -> _Pass:
    """The passes' results as one (concatenated in system and atom order)."""
    if len(passes) == 1:
        return passes[0]
    strain = [p.strain_gradient for p in passes]
    return _Pass(
        torch.cat([p.energy for p in passes]),
        torch.cat([p.gradient for p in passes]),
        None if strain[0] is None else torch.cat(strain),  # type: ignore[arg-type]
        {key: torch.cat([p.others[key] for p in passes]) for key in passes[0].others},
    )


def _gradients(energy: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``∂(Σ energy)/∂input`` for each input (zeros where the energy does not depend on it)."""
    if not energy.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    gradients = torch.autograd.grad(energy.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g.detach() for g, x in zip(gradients, inputs, strict=True)]
