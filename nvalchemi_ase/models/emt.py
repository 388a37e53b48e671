"""Effective-medium theory, equal to ``ase.calculators.emt.EMT``, batched over systems.

Each atom ``a`` sees the neighbours ``b`` with ``r_ab < rc_list`` through the
logistic cutoff ``w(r)`` (see :mod:`~nvalchemi_ase.models.emt_parameters`).
With χ_ab = n0_b / n0_a and β = 1.809:

* density  σ₁(a) = Σ_b χ_ab·w·exp(−η₂_b (r − β s0_b));
* neutral-sphere radius  s_a = −ln(σ₁(a) / 12γ₁_a) / (β η₂_a);
* cohesive energy  E_c(a) = E0_a (1 + λ_a s_a) e^(−λ_a s_a) + 6 V0_a e^(−κ_a s_a);
* atomic-sphere correction  E_AS = Σ_(a,b) −(V0_a / 2γ₂_a)·χ_ab·w·exp(−κ_b (r/β − s0_b)),
  shared half and half between a and b;
* per-atom energy  E_a = E_c(a) + ½ Σ_b (e_ab + e_ba) − E0_a (ASAP's zero: the isolated atom).

Forces and stress are analytic: the energy depends on each pair through its
distance only, so ``F_a = Σ_b (dE/dr_ab / r_ab)·d_ab`` with ``d_ab = r_b − r_a``
and ``σ = 1/(2V) Σ_ab (dE/dr_ab / r_ab)·d_ab ⊗ d_ab``. The pair sums run in two fused
kernels (:mod:`~nvalchemi_ase.models.emt_kernel`); ``use_kernel=False`` gives
the same numbers as tensor expressions over the batch's padded neighbour
matrix ``[N, K]``. Neither loops over systems or atoms in Python.

Reference: K. W. Jacobsen, P. Stoltze and J. K. Nørskov, Surf. Sci. 366, 394
(1996), doi:10.1016/0039-6028(96)00816-3.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from ase.data import chemical_symbols

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models.base import DEFAULT_PROPERTIES, BatchedModel, volumes
from nvalchemi_ase.models.emt_parameters import (
    BETA,
    SUPPORTED_ELEMENTS,
    cutoff_radii,
    fcc_gammas,
    largest_cutoff,
    largest_s0,
    parameter_table,
)
from nvalchemi_ase.neighbors import NeighborList
from nvalchemi_ase.ops import segment_broadcast, segment_max, segment_sum


class AtomTerms(NamedTuple):
    """Per-atom EMT quantities, each ``[N]`` (Å, eV; ``slope`` in 1/Å)."""

    e0: torch.Tensor
    s0: torch.Tensor
    v0: torch.Tensor
    eta2: torch.Tensor
    kappa: torch.Tensor
    lam: torch.Tensor
    n0: torch.Tensor
    rc: torch.Tensor
    rc_list: torch.Tensor
    slope: torch.Tensor
    gamma1: torch.Tensor
    gamma2: torch.Tensor


class EMT(BatchedModel):
    """Batched effective-medium theory with ASE's parameters, cutoffs and energy zero.

    Parameters
    ----------
    asap_cutoff
        As ASE's: False (default) takes the cutoff from the largest atom of the
        parameter table; True from the largest element present, decided for each
        system of a batch separately (so each system equals ASE's EMT on it
        alone), with ``rc_list = 1.045·rc``.
    skin
        Å, the neighbour list's reuse margin (keyword only; not in ASE).
    max_neighbors
        Room per atom in the neighbour list (``None``: sized automatically).
    use_kernel
        Sum the pairs with the fused kernels (default; float64 inside whatever
        the batch's dtype) rather than with ``[N, K]`` tensor expressions.

    Attributes
    ----------
    cutoff
        Å, the largest pair distance any system may need: ``rc_list`` of the
        whole table (≈ 5.877 Å, or ≈ 5.619 Å with ``asap_cutoff``).

    Notes
    -----
    Supported elements: Al, Cu, Ag, Au, Ni, Pd, Pt, and ASE's "just for fun"
    H, C, N, O. Any other element raises ``NotImplementedError`` naming it and
    the systems holding it, before anything is computed. The check costs one
    device→host sync when it runs, and it runs only when the batch's
    ``atomic_numbers`` tensor is new or was modified in place.
    Stress is NaN for systems whose cell does not span 3D (ASE raises there).
    """

    implemented_properties = ("energy", "free_energy", "energies", "forces", "stress")

    def __init__(
        self,
        asap_cutoff: bool = False,
        *,
        skin: float = 0.5,
        max_neighbors: int | None = None,
        use_kernel: bool = True,
    ) -> None:
        if not isinstance(asap_cutoff, bool):
            raise TypeError(f"EMT: asap_cutoff must be a bool, got {asap_cutoff!r}")
        if not skin >= 0.0:
            raise ValueError(f"EMT: skin must be non-negative, got {skin!r}")
        super().__init__()
        self.asap_cutoff = asap_cutoff
        self.skin = float(skin)
        self.max_neighbors = max_neighbors
        self.use_kernel = use_kernel
        self.cutoff = largest_cutoff(asap_cutoff)
        self.neighbor_list = NeighborList(self.cutoff, skin=self.skin, max_neighbors=max_neighbors)
        self._table = parameter_table()
        self._tables: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._checked: tuple[weakref.ref[torch.Tensor], tuple[int, ...]] | None = None

    def todict(self) -> dict[str, Any]:
        return {
            "asap_cutoff": self.asap_cutoff,
            "skin": self.skin,
            "max_neighbors": self.max_neighbors,
            "use_kernel": self.use_kernel,
        }

    def check_elements(self, batch: Batch) -> None:
        """Raise ``NotImplementedError`` naming each unsupported element and the systems holding it.

        Skipped (no sync) when ``batch.atomic_numbers`` is the very tensor checked
        last time, unmodified since.
        """
        numbers = batch.atomic_numbers
        stamp = (numbers.data_ptr(), numbers._version, numbers.numel())
        if self._checked is not None and self._checked[0]() is numbers and self._checked[1] == stamp:
            return
        known = ~self._table_for(batch)[:, 0].isnan()
        in_range = (numbers >= 0) & (numbers < known.numel())
        supported = in_range & known[numbers.clamp(0, known.numel() - 1)]
        if not bool(supported.all()):
            unsupported = (~supported).nonzero().squeeze(1)
            raise NotImplementedError(
                _unsupported_message(numbers[unsupported].tolist(), batch.batch_idx[unsupported].tolist())
            )
        self._checked = (weakref.ref(numbers), stamp)

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        self.check_elements(batch)
        neighbors = self.neighbors(batch)
        atoms = atom_terms(
            self._table_for(batch), batch.atomic_numbers, batch.batch_idx, batch.num_graphs, self.asap_cutoff
        )
        atom_virial: torch.Tensor | None = None
        if self.use_kernel:
            energies, forces, atom_virial = kernel_terms(
                atoms, batch.positions, neighbors, "stress" in properties
            )
        else:
            vectors = neighbors.vectors(batch.positions.detach())  # [N, K, 3]
            energies, de_dr_over_r = emt_terms(atoms, neighbors.matrix, neighbors.mask, vectors)
            forces = torch.einsum("nk,nkd->nd", de_dr_over_r, vectors)
            if "stress" in properties:
                atom_virial = 0.5 * torch.einsum("nk,nka,nkb->nab", de_dr_over_r, vectors, vectors)
        energy = segment_sum(energies, batch.batch_idx, batch.num_graphs).unsqueeze(1)
        poisoned = neighbors.overflow  # incomplete pair sets must not pass for results
        atom_poisoned = segment_broadcast(poisoned, batch.batch_idx)
        outputs = {
            "energy": torch.where(poisoned.unsqueeze(1), torch.nan, energy),
            "forces": torch.where(atom_poisoned.unsqueeze(1), torch.nan, forces),
            "energies": torch.where(atom_poisoned, torch.nan, energies),
        }
        if atom_virial is not None:  # stress was asked for
            virial = segment_sum(atom_virial, batch.batch_idx, batch.num_graphs)
            volume = volumes(batch.cell).view(-1, 1, 1)
            stress = torch.where(volume > 0, virial / volume, torch.nan)
            outputs["stress"] = torch.where(poisoned.view(-1, 1, 1), torch.nan, stress)
        return outputs

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_checked"] = None  # a weak reference does not pickle; the copy checks again
        return state

    def _table_for(self, batch: Batch) -> torch.Tensor:
        """The parameter table on the batch's device and in its dtype (cached)."""
        key = (batch.device, batch.dtype)
        if key not in self._tables:
            self._tables[key] = self._table.to(device=batch.device, dtype=batch.dtype)
        return self._tables[key]

    def __repr__(self) -> str:
        return (
            f"EMT(asap_cutoff={self.asap_cutoff}, skin={self.skin}, max_neighbors={self.max_neighbors}, "
            f"use_kernel={self.use_kernel})"
        )


def _unsupported_message(numbers: list[int], systems: list[int]) -> str:
    """ASE's message, with the systems that hold each element: "No EMT-potential for Fe in system(s) [1]"."""
    found: dict[int, set[int]] = {}
    for z, system in zip(numbers, systems, strict=True):
        found.setdefault(z, set()).add(system)
    symbols = {z: chemical_symbols[z] if 0 <= z < len(chemical_symbols) else f"Z={z}" for z in found}
    described = "; ".join(f"{symbols[z]} in system(s) {sorted(found[z])}" for z in sorted(found))
    return f"No EMT-potential for {described} (EMT supports {', '.join(SUPPORTED_ELEMENTS)})"


def atom_terms(
    table: torch.Tensor,
    numbers: torch.Tensor,
    batch_idx: torch.Tensor,
    num_systems: int,
    asap_cutoff: bool,
) -> AtomTerms:
    """Each atom's parameters, its system's cutoff and its element's fcc reference sums.

    Parameters
    ----------
    table
        ``[Z_max + 1, 7]`` parameters by atomic number (:func:`~.emt_parameters.parameter_table`).
    numbers, batch_idx
        ``[N]`` atomic numbers and system of each atom.
    num_systems
        B.
    asap_cutoff
        Whether the cutoff follows the largest element of each system (else of the table).
    """
    e0, s0, v0, eta2, kappa, lam, n0 = table[numbers].unbind(1)
    if asap_cutoff:
        s_max = segment_broadcast(segment_max(s0, batch_idx, num_systems), batch_idx)
    else:
        s_max = torch.full_like(s0, largest_s0())
    rc, rc_list, slope = cutoff_radii(s_max, asap_cutoff)
    gamma1, gamma2 = fcc_gammas(s0, eta2, kappa, rc, slope)
    return AtomTerms(e0, s0, v0, eta2, kappa, lam, n0, rc, rc_list, slope, gamma1, gamma2)


def emt_terms(
    atoms: AtomTerms, matrix: torch.Tensor, mask: torch.Tensor, vectors: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-atom energies ``[N]`` (eV) and ``(dE/dr)/r`` of every pair slot ``[N, K]`` (eV/Å²).

    ``matrix``, ``mask`` and ``vectors`` are the neighbour matrix ``[N, K]``, its
    real-pair mask and the pair vectors ``[N, K, 3]`` (Å). Slots that are padding
    or not closer than ``rc_list`` contribute nothing.
    """
    r = torch.sqrt(torch.einsum("nkd,nkd->nk", vectors, vectors))
    valid = mask & (r < atoms.rc_list.unsqueeze(1))
    r = torch.where(valid, r, atoms.rc_list.unsqueeze(1))  # a harmless distance for empty slots
    columns = _PairColumns.of(atoms)
    own = _PairColumns(*(column.unsqueeze(1) for column in columns))  # the centre atom a, [N, 1]
    other = _PairColumns(*torch.stack(columns)[:, matrix].unbind(0))  # the neighbour b, [N, K] each
    rc, slope = atoms.rc.unsqueeze(1), atoms.slope.unsqueeze(1)
    w = torch.where(valid, 1.0 / (1.0 + torch.exp(slope * (r - rc))), 0.0)
    dlogw = slope * (w - 1.0)  # (dw/dr) / w
    w_in = w * other.n0 * own.inv_n0  # χ_ab·w
    w_out = w * own.n0 * other.inv_n0  # w/χ_ab
    sigma_in = torch.exp(other.eta2 * (other.beta_s0 - r)) * w_in  # b's share of σ₁(a)
    sigma_out = torch.exp(own.eta2 * (own.beta_s0 - r)) * w_out  # a's share of σ₁(b)
    sphere_in = own.sphere * torch.exp(other.kappa_beta * (other.beta_s0 - r)) * w_in  # e_ab
    sphere_out = other.sphere * torch.exp(own.kappa_beta * (own.beta_s0 - r)) * w_out  # e_ba
    cohesive, de_dsigma = cohesive_terms(atoms, sigma_in.sum(dim=1))
    energies = cohesive + 0.5 * (sphere_in + sphere_out).sum(dim=1) - atoms.e0
    de_dr = (
        sphere_in * (dlogw - other.kappa_beta)
        + sphere_out * (dlogw - own.kappa_beta)
        + de_dsigma.unsqueeze(1) * sigma_in * (dlogw - other.eta2)
        + de_dsigma[matrix] * sigma_out * (dlogw - own.eta2)
    )
    return energies, de_dr / r


def kernel_terms(
    atoms: AtomTerms, positions: torch.Tensor, neighbors: Any, with_virials: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-atom energies ``[N]``, forces ``[N, 3]`` and virials ``[N, 3, 3]`` (or None) from the kernels.

    The same terms as :func:`emt_terms`, summed in :mod:`~nvalchemi_ase.models.emt_kernel`
    in float64 and returned in the batch's dtype.
    """
    from nvalchemi_ase.models import emt_kernel

    dtype = positions.dtype
    f64 = torch.float64
    columns = _PairColumns.of(atoms)
    per_atom = [*columns, atoms.rc, atoms.slope, atoms.rc_list, torch.zeros_like(atoms.rc)]
    table = torch.stack([column.to(f64) for column in per_atom], dim=1).contiguous()
    sigma1 = emt_kernel.density(positions, neighbors, table)
    atoms64 = AtomTerms(*(term.to(f64) for term in atoms))
    cohesive, de_dsigma = cohesive_terms(atoms64, sigma1)
    table[:, emt_kernel.DE_DSIGMA] = de_dsigma
    spheres, forces, virials = emt_kernel.sums(positions, neighbors, table, with_virials)
    energies = cohesive + 0.5 * spheres - atoms64.e0
    return (
        energies.to(dtype),
        forces.to(dtype),
        None if virials is None else virials.to(dtype),
    )


class _PairColumns(NamedTuple):
    """Per-atom factors of the pair terms, precomputed so each ``[N, K]`` term takes few passes."""

    beta_s0: torch.Tensor  # β·s0, Å
    eta2: torch.Tensor  # 1/Å
    kappa_beta: torch.Tensor  # κ/β, 1/Å
    n0: torch.Tensor
    inv_n0: torch.Tensor
    sphere: torch.Tensor  # −V0 / 2γ₂, eV

    @classmethod
    def of(cls, atoms: AtomTerms) -> _PairColumns:
        return cls(
            BETA * atoms.s0,
            atoms.eta2,
            atoms.kappa / BETA,
            atoms.n0,
            1.0 / atoms.n0,
            -0.5 * atoms.v0 / atoms.gamma2,
        )


def cohesive_terms(atoms: AtomTerms, sigma1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cohesive energy ``E_c`` ``[N]`` (eV) and its derivative ``dE_c/dσ₁`` ``[N]``.

    Atoms without neighbours (σ₁ = 0) get the isolated-atom limit: 0 and 0.
    """
    present = sigma1 > 0.0
    sigma1 = torch.where(present, sigma1, 12.0 * atoms.gamma1)
    s = -torch.log(sigma1 * (1.0 / (12.0 * atoms.gamma1))) / (BETA * atoms.eta2)
    lam_s = atoms.lam * s
    decay = torch.exp(-lam_s)
    repulsion = 6.0 * atoms.v0 * torch.exp(-atoms.kappa * s)
    energy = atoms.e0 * (1.0 + lam_s) * decay + repulsion
    de_ds = -atoms.e0 * atoms.lam * lam_s * decay - atoms.kappa * repulsion
    de_dsigma = de_ds / (-BETA * atoms.eta2 * sigma1)
    return torch.where(present, energy, 0.0), torch.where(present, de_dsigma, 0.0)
