"""Shared machinery of pair potentials: neighbours, per-pair terms, sums per atom and system.

A pair potential supplies ``pair_terms(r2)``: the pair energy ``u`` and the
scalar ``du = (du/dr) / r``, so that the pair force on atom i from j is
``f_ij = du * d_ij`` with ``d_ij = r_j - r_i`` (the convention of
``ase.calculators.lj``). From those, over a full (both-ways) pair list:

* per-atom energy ``E_i = 1/2 Σ_j u_ij``, system energy ``E = Σ_i E_i``;
* force ``F_i = Σ_j f_ij``;
* stress ``σ = 1/(2V) Σ_ij f_ij ⊗ d_ij`` (eV/Å³, positive is tensile).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from nvalchemi_ase.data import FORCES_BOUND, Batch
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, BatchedModel, volumes
from nvalchemi_ase.neighbors import NeighborList, Neighbors
from nvalchemi_ase.ops import segment_broadcast, segment_sum

if TYPE_CHECKING:  # the module loads warp: imported where a kick is made, not here
    from nvalchemi_ase.ops.verlet_kernel import SecondKick


@functools.cache
def kernels() -> Any:
    """:mod:`nvalchemi_ase.models.pair_kernel`, imported on first use (it loads warp).

    A function-level import costs microseconds on every call, and a step reads the
    kernel's terms three times: the module is looked up once.
    """
    from nvalchemi_ase.models import pair_kernel

    return pair_kernel


class PairPotential(BatchedModel):
    """A pair potential over a batched neighbour list with a Verlet skin.

    Parameters
    ----------
    cutoff
        Å, pairs farther apart do not interact.
    skin
        Å, the neighbour list's reuse margin (see :class:`~nvalchemi_ase.neighbors.NeighborList`).
    max_neighbors
        Room per atom in the neighbour list (``None``: sized automatically).
    use_kernel
        Sum the pairs with the fused kernel (``pair_kernel``) when the potential
        has one; False uses plain torch operations (the same numbers, slower).

    Per-atom ``energies`` are returned when asked for (``"energies"`` in the
    properties): on a CPU the half-list kernel then writes each partner's share
    of a pair's energy too, work a step that only needs the systems' energies skips.
    """

    implemented_properties = ("energy", "free_energy", "forces", "stress", "energies")
    extra_outputs = (FORCES_BOUND,)
    """Given where the half-list kernel runs (a float64 batch on a CPU, its list reused over steps)."""

    def __init__(
        self, cutoff: float, skin: float = 0.5, max_neighbors: int | None = None, use_kernel: bool = True
    ) -> None:
        super().__init__()
        self.use_kernel = use_kernel
        self.cutoff = float(cutoff)
        self.neighbor_list = NeighborList(self.cutoff, skin=skin, max_neighbors=max_neighbors)

    def offer_kick(self, second_kick: SecondKick | None) -> None:
        """Let the next call do ``second_kick`` with the forces it computes, where its kernel can.

        NVE offers its second half kick (see :class:`~nvalchemi_ase.ops.verlet_kernel.SecondKick`)
        and keeps the result unless a hook changed the forces before the kick. The offer holds
        for one call; ``second_kick.taken`` then says whether it was done.
        """
        self.__dict__["_offered_kick"] = second_kick  # not an attribute the kernel reads (__setattr__)

    def pair_terms(self, r2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pair energy ``u`` and ``du = (du/dr)/r`` at squared distances ``r2`` (all inside the cutoff)."""
        raise NotImplementedError

    @property
    def propagates_nonfinite(self) -> bool:  # type: ignore[override]
        """The fused kernel makes a bad atom's results NaN itself; the torch path needs poisoning."""
        return self.kernel_terms is not None and self.use_kernel

    kernel_terms: Any = None
    """A ``wp.func`` ``(r2, params) -> vec2d(u, du)`` for the fused kernel (see ``pair_kernel``), or None."""

    def kernel_parameters(self) -> torch.Tensor:
        """The float64 parameter vector ``kernel_terms`` reads, on the host (copied to the device once)."""
        raise NotImplementedError

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        second_kick = self.__dict__.pop("_offered_kick", None)
        neighbors = self.neighbors(batch)
        with_virials = "stress" in properties
        atom_energies = "energies" in properties
        terms = self.kernel_terms
        bound = None
        if terms is not None and self.use_kernel:
            if batch.dtype != torch.float64:  # the forces are converted after the kernel
                second_kick = None
            elif FORCES_BOUND in properties and kernels().fills_forces_bound(neighbors):
                bound = kernels().FORCES_BOUNDS.take((batch.num_graphs,), torch.float64, batch.device)
            energy, energies, forces, atom_virials = self._kernel_sums(
                batch, neighbors, with_virials, terms, atom_energies, second_kick, bound
            )
        else:
            energies, forces, atom_virials = self._torch_sums(batch, neighbors, with_virials)
            energy = segment_sum(energies, batch.batch_idx, batch.num_graphs)
        outputs = {"energy": energy.unsqueeze(1), "forces": forces}
        if bound is not None and neighbors.complete:  # incomplete sets' forces are replaced below
            outputs[FORCES_BOUND] = bound
        if atom_energies:  # else the kernel's first result may only add up to the energy
            outputs["energies"] = energies
        if atom_virials is not None:  # stress was asked for
            virial = segment_sum(atom_virials, batch.batch_idx, batch.num_graphs)
            volume = volumes(batch.cell).view(-1, 1, 1)
            outputs["stress"] = torch.where(volume > 0, virial / volume, torch.nan)
        if not neighbors.complete:  # incomplete pair sets must not pass for results
            if second_kick is not None:  # it kicked with forces that are replaced below
                second_kick.taken = False
            poisoned = neighbors.overflow
            outputs["energy"] = torch.where(poisoned.unsqueeze(1), torch.nan, outputs["energy"])
            atoms = segment_broadcast(poisoned, batch.batch_idx).unsqueeze(1)
            outputs["forces"] = torch.where(atoms, torch.nan, forces)
            if "stress" in outputs:
                outputs["stress"] = torch.where(poisoned.view(-1, 1, 1), torch.nan, outputs["stress"])
        return outputs

    def _kernel_sums(
        self,
        batch: Batch,
        neighbors: Neighbors,
        with_virials: bool,
        terms: Any,
        atom_energies: bool,
        second_kick: SecondKick | None = None,
        forces_bound: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(energy [B], energies, forces, virials)`` from the fused kernel (the systems' sums too;
        ``forces_bound`` filled where given)."""
        pair_kernel = kernels()
        energy = pair_kernel.SYSTEM_ENERGIES.take((batch.num_graphs,), torch.float64, batch.device)
        energies, forces, virials = pair_kernel.pair_sums(
            terms,
            self._parameters_on(batch.device),
            batch.positions,
            neighbors,
            self.cutoff,
            with_virials,
            atom_energies=atom_energies,
            system_energies=energy,
            second_kick=second_kick,
            forces_bound=forces_bound,
        )
        if batch.dtype == torch.float64:  # the kernel's own precision: nothing to convert
            return energy, energies, forces, virials
        dtype = batch.dtype
        converted = energies.to(dtype), forces.to(dtype), None if virials is None else virials.to(dtype)
        return energy.to(dtype), *converted

    def _parameters_on(self, device: torch.device) -> torch.Tensor:
        """``kernel_parameters()`` on ``device``, made again only after an attribute was assigned."""
        cached = self.__dict__.get("_parameters_cache")
        if cached is None or cached.device != device:
            cached = self.kernel_parameters().to(device=device, dtype=torch.float64)
            self.__dict__["_parameters_cache"] = cached
        return cached

    def __setattr__(self, name: str, value: Any) -> None:
        self.__dict__["_parameters_cache"] = None  # sigma, epsilon, ...: the kernel's vector is stale
        super().__setattr__(name, value)

    def _torch_sums(
        self, batch: Batch, neighbors: Neighbors, with_virials: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        vectors = neighbors.vectors(batch.positions.detach())  # [N, K, 3]
        r2 = torch.einsum("nkd,nkd->nk", vectors, vectors)
        inside = neighbors.mask & (r2 <= self.cutoff**2)
        u, du = self.pair_terms(torch.where(inside, r2, torch.ones_like(r2)))
        zero = torch.zeros_like(u)
        du = torch.where(inside, du, zero)  # pair force f_ij = du_ij * d_ij
        energies = 0.5 * torch.where(inside, u, zero).sum(dim=1)
        forces = torch.einsum("nk,nkd->nd", du, vectors)
        if not with_virials:
            return energies, forces, None
        atom_virials = 0.5 * torch.einsum("nk,nka,nkb->nab", du, vectors, vectors)
        return energies, forces, atom_virials
