"""What an energy module sees: :class:`AtomGraph`, and the spans of a batch it is built from.

A ``GraphSpan`` is consecutive whole systems of a batch with their edges (the whole batch, or one of the
groups :class:`~nvalchemi_ase.models.AutogradModel` evaluates in turn on CPU); ``strained_graph``
deforms it into the differentiable graph a module receives.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.ops import segment_broadcast


@dataclass(frozen=True)
class AtomGraph:
    """What an energy module receives: the batch as a graph, in MACE's layout and names.

    Attributes
    ----------
    positions
        ``[N, 3]`` Å (strained, and differentiable: do not detach).
    atomic_numbers
        ``[N]`` long.
    cell
        ``[B, 3, 3]`` Å, rows are lattice vectors (strained; zero rows where a system has none).
    pbc
        ``[B, 3]`` bool.
    edge_index
        ``[2, E]`` long, ``(sender, receiver)`` = ``(i, j)``: every pair closer than
        the cutoff, both ways (``(j, i)`` is listed too), never across systems.
    unit_shifts
        ``[E, 3]`` long, integer cell shifts of the receiver's image.
    shifts
        ``[E, 3]`` Å, ``unit_shifts @ cell`` of the pair's system.
    edge_vectors
        ``[E, 3]`` Å, ``positions[j] − positions[i] + shifts`` (differentiable).
    batch
        ``[N]`` long, the system of each atom.
    ptr
        ``[B + 1]`` long, atom offsets of the systems.
    num_systems
        B.
    reverse_edge
        ``[E]`` long, the index of each edge's reverse ``(j, i, −S)``
        (when the model was made with ``reverse_edges=True``, else ``None``).
    triplets
        ``[A, 2]`` long, ordered pairs of distinct edges leaving the same atom,
        both shorter than ``angle_cutoff`` (when one was given, else ``None``);
        see :func:`~nvalchemi_ase.neighbors.graph.angle_triplets`.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    edge_index: torch.Tensor
    unit_shifts: torch.Tensor
    shifts: torch.Tensor
    edge_vectors: torch.Tensor
    batch: torch.Tensor
    ptr: torch.Tensor
    num_systems: int
    reverse_edge: torch.Tensor | None = None
    triplets: torch.Tensor | None = None

    def as_dict(self) -> dict[str, torch.Tensor]:
        """The tensors under MACE's keys (``positions``, ``edge_index``, ``shifts``, ``unit_shifts``,
        ``cell``, ``batch``, ``ptr``, ...), for modules that take a data dict."""
        return {
            "positions": self.positions,
            "atomic_numbers": self.atomic_numbers,
            "cell": self.cell,
            "pbc": self.pbc,
            "edge_index": self.edge_index,
            "unit_shifts": self.unit_shifts,
            "shifts": self.shifts,
            "edge_vectors": self.edge_vectors,
            "batch": self.batch,
            "ptr": self.ptr,
        }


def cast_graph(graph: AtomGraph, dtype: torch.dtype | None) -> AtomGraph:
    """The graph with its float tensors in ``dtype`` (differentiable casts), or as it is."""
    if dtype is None or dtype == graph.positions.dtype:
        return graph
    return dataclasses.replace(
        graph,
        positions=graph.positions.to(dtype),
        cell=graph.cell.to(dtype),
        shifts=graph.shifts.to(dtype),
        edge_vectors=graph.edge_vectors.to(dtype),
    )


def strained_graph(span: GraphSpan, positions: torch.Tensor, strain: torch.Tensor) -> AtomGraph:
    """The graph of ``span`` deformed by ``strain [B, 3, 3]`` (symmetrised; identity at zero).

    ``positions [N, 3]`` and ``strain`` are the leaves the derivatives are taken for.
    """
    symmetric = 0.5 * (strain + strain.transpose(1, 2))
    deformation = torch.eye(3, dtype=strain.dtype, device=strain.device) + symmetric  # [B, 3, 3]
    strained = torch.einsum("nd,nde->ne", positions, segment_broadcast(deformation, span.batch_idx))
    cell = torch.bmm(span.cell, deformation)
    sender, receiver = span.edge_index
    shifts = torch.einsum("ed,edc->ec", span.unit_shifts.to(cell.dtype), cell[span.batch_idx[sender]])
    return AtomGraph(
        positions=strained,
        atomic_numbers=span.atomic_numbers,
        cell=cell,
        pbc=span.pbc,
        edge_index=span.edge_index,
        unit_shifts=span.unit_shifts,
        shifts=shifts,
        edge_vectors=strained[receiver] - strained[sender] + shifts,
        batch=span.batch_idx,
        ptr=span.ptr,
        num_systems=span.num_graphs,
        reverse_edge=span.reverse_edge,
        triplets=span.triplets,
    )


@dataclass(frozen=True)
class GraphSpan:
    """Consecutive systems of a batch with their edges: what one pass of the module sees.

    Indices (``batch_idx``, ``ptr``, ``edge_index``, ``reverse_edge``, ``triplets``) count from the span's
    first atom and edge.
    """

    positions: torch.Tensor
    atomic_numbers: torch.Tensor
    cell: torch.Tensor
    pbc: torch.Tensor
    batch_idx: torch.Tensor
    ptr: torch.Tensor
    edge_index: torch.Tensor
    unit_shifts: torch.Tensor
    reverse_edge: torch.Tensor | None = None
    triplets: torch.Tensor | None = None

    @classmethod
    def of(
        cls, batch: Batch, edge_index: torch.Tensor, unit_shifts: torch.Tensor, **extras: Any
    ) -> GraphSpan:
        """The whole batch with its edges (``extras``: ``reverse_edge``, ``triplets``)."""
        return cls(
            batch.positions, batch.atomic_numbers, batch.cell, batch.pbc, batch.batch_idx, batch.ptr,
            edge_index, unit_shifts, **extras,
        )  # fmt: skip

    @property
    def num_graphs(self) -> int:
        return self.cell.shape[0]

    @property
    def num_nodes(self) -> int:
        return self.positions.shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.positions.dtype

    def part(
        self,
        systems: tuple[int, int],
        atoms: tuple[int, int],
        edges: tuple[int, int],
        triplets: tuple[int, int] | None,
    ) -> GraphSpan:
        """Systems ``[first, last)``, whose atoms, edges and triplets are the given ranges."""
        (s0, s1), (a0, a1), (e0, e1) = systems, atoms, edges
        angles = None
        if self.triplets is not None:
            assert triplets is not None, "a span with angles is cut with its triplet range"
            angles = self.triplets[triplets[0] : triplets[1]] - e0
        return GraphSpan(
            positions=self.positions[a0:a1],
            atomic_numbers=self.atomic_numbers[a0:a1],
            cell=self.cell[s0:s1],
            pbc=self.pbc[s0:s1],
            batch_idx=self.batch_idx[a0:a1] - s0,
            ptr=self.ptr[s0 : s1 + 1] - a0,
            edge_index=self.edge_index[:, e0:e1] - a0,
            unit_shifts=self.unit_shifts[e0:e1],
            reverse_edge=None if self.reverse_edge is None else self.reverse_edge[e0:e1] - e0,
            triplets=angles,
        )


__all__ = ["AtomGraph", "GraphSpan", "cast_graph", "strained_graph"]
