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

One backward pass gives both, for all systems at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, BatchedModel, ModelOutputError, volumes
from nvalchemi_ase.neighbors import NeighborList, Neighbors
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


class AutogradModel(BatchedModel):
    """A full model (energy, forces, stress) from a module that computes energies only.

    Parameters
    ----------
    module
        A ``torch.nn.Module`` whose ``forward(graph: AtomGraph)`` returns the
        energy of each system, ``[B]`` or ``[B, 1]`` eV, differentiably in
        ``graph.positions`` / ``graph.edge_vectors``. It must accept the batch's
        float dtype and device (``.to()`` the model as any module).
    cutoff
        Å, the module's interaction range: edges are the pairs closer than it.
    skin
        Å, the neighbour list's reuse margin (keyword only).
    max_neighbors
        Room per atom in the neighbour list (``None``: sized automatically).
    compute_stress
        Whether ``stress`` is offered (it costs a strain derivative in the same backward pass).

    Notes
    -----
    Sizing the edge list costs one device→host sync per evaluation (the pairs
    closer than the cutoff are compacted out of the padded neighbour matrix);
    an ML potential's own cost dwarfs it. Outputs are detached, nothing
    requires grad afterwards, and the batch's tensors are never marked.
    Stress is NaN for systems whose cell does not span 3D.
    """

    def __init__(
        self,
        module: torch.nn.Module,
        cutoff: float,
        *,
        skin: float = 0.5,
        max_neighbors: int | None = None,
        compute_stress: bool = True,
    ) -> None:
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f"AutogradModel: module must be a torch.nn.Module, got {type(module).__name__}")
        if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not cutoff > 0.0:
            raise ValueError(f"AutogradModel: cutoff must be a positive number of Å, got {cutoff!r}")
        if not isinstance(skin, int | float) or not skin >= 0.0:
            raise ValueError(f"AutogradModel: skin must be non-negative, got {skin!r}")
        if not isinstance(compute_stress, bool):
            raise TypeError(f"AutogradModel: compute_stress must be a bool, got {compute_stress!r}")
        super().__init__()
        self.module = module
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.max_neighbors = max_neighbors
        self.compute_stress = compute_stress
        self.implemented_properties = ("energy", "free_energy", "forces") + (
            ("stress",) if compute_stress else ()
        )
        self.neighbor_list = NeighborList(self.cutoff, skin=self.skin, max_neighbors=max_neighbors)

    def todict(self) -> dict[str, Any]:
        return {
            "module": type(self.module).__name__,
            "cutoff": self.cutoff,
            "skin": self.skin,
            "max_neighbors": self.max_neighbors,
            "compute_stress": self.compute_stress,
        }

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        neighbors = self.neighbors(batch)
        edge_index, unit_shifts = self.edges(batch, neighbors)
        want_stress = self.compute_stress and "stress" in properties
        with torch.enable_grad():
            positions = batch.positions.detach().requires_grad_(True)
            strain = torch.zeros_like(batch.cell).requires_grad_(want_stress)
            graph = strained_graph(batch, positions, strain, edge_index, unit_shifts)
            energy = self._energy(graph, batch.num_graphs)
            inputs = (positions, strain) if want_stress else (positions,)
            gradients = _gradients(energy, inputs)
        poisoned = neighbors.overflow  # incomplete pair sets must not pass for results
        outputs = {
            "energy": torch.where(poisoned.unsqueeze(1), torch.nan, energy.detach().unsqueeze(1)),
            "forces": torch.where(
                segment_broadcast(poisoned, batch.batch_idx).unsqueeze(1), torch.nan, -gradients[0]
            ),
        }
        if want_stress:
            volume = volumes(batch.cell).view(-1, 1, 1)
            stress = torch.where(volume > 0, gradients[1] / volume, torch.nan)
            outputs["stress"] = torch.where(poisoned.view(-1, 1, 1), torch.nan, stress)
        return outputs

    def edges(self, batch: Batch, neighbors: Neighbors) -> tuple[torch.Tensor, torch.Tensor]:
        """``edge_index [2, E]`` and ``unit_shifts [E, 3]`` of the pairs closer than the cutoff (one sync)."""
        with torch.no_grad():
            vectors = neighbors.vectors(batch.positions.detach())
            r2 = torch.einsum("nkd,nkd->nk", vectors, vectors)
            keep = (neighbors.mask & (r2 < self.cutoff**2)).reshape(-1).nonzero().squeeze(1)
            edge_index = torch.stack([neighbors.i[keep], neighbors.j[keep]])
            return edge_index, neighbors.pair_shifts[keep]

    def _energy(self, graph: AtomGraph, num_systems: int) -> torch.Tensor:
        energy = self.module(graph)
        if not isinstance(energy, torch.Tensor) or energy.reshape(-1).shape != (num_systems,):
            shape = tuple(energy.shape) if isinstance(energy, torch.Tensor) else type(energy).__name__
            raise ModelOutputError(
                f"module {type(self.module).__name__} returned energy {shape}, "
                f"expected [{num_systems}] or [{num_systems}, 1] (one per system)"
            )
        return energy.reshape(-1)

    def __repr__(self) -> str:
        return (
            f"AutogradModel({type(self.module).__name__}, cutoff={self.cutoff}, skin={self.skin}, "
            f"compute_stress={self.compute_stress})"
        )


def strained_graph(
    batch: Batch,
    positions: torch.Tensor,
    strain: torch.Tensor,
    edge_index: torch.Tensor,
    unit_shifts: torch.Tensor,
) -> AtomGraph:
    """The graph of the batch deformed by ``strain [B, 3, 3]`` (symmetrised; identity at zero).

    ``positions [N, 3]`` and ``strain`` are the leaves the derivatives are taken for.
    """
    symmetric = 0.5 * (strain + strain.transpose(1, 2))
    deformation = torch.eye(3, dtype=strain.dtype, device=strain.device) + symmetric  # [B, 3, 3]
    strained = torch.einsum("nd,nde->ne", positions, segment_broadcast(deformation, batch.batch_idx))
    cell = torch.bmm(batch.cell, deformation)
    sender, receiver = edge_index
    shifts = torch.einsum("ed,edc->ec", unit_shifts.to(cell.dtype), cell[batch.batch_idx[sender]])
    return AtomGraph(
        positions=strained,
        atomic_numbers=batch.atomic_numbers,
        cell=cell,
        pbc=batch.pbc,
        edge_index=edge_index,
        unit_shifts=unit_shifts,
        shifts=shifts,
        edge_vectors=strained[receiver] - strained[sender] + shifts,
        batch=batch.batch_idx,
        ptr=batch.ptr,
        num_systems=batch.num_graphs,
    )


def _gradients(energy: torch.Tensor, inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``∂(Σ energy)/∂input`` for each input (zeros where the energy does not depend on it)."""
    if not energy.requires_grad:
        return [torch.zeros_like(x) for x in inputs]
    gradients = torch.autograd.grad(energy.sum(), inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g.detach() for g, x in zip(gradients, inputs, strict=True)]
