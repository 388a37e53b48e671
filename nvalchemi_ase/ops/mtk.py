"""Martyna–Tobias–Klein NPT moves, in the scheme of ``ase.md.nose_hoover_chain.MTKNPT`` / ``IsotropicMTKNPT``.

Per system, a cell momentum p_g (``[B, 3, 3]``, full cell; ``[B, 1, 1]``,
isotropic: p_ε) with mass W moves the atoms and the cell; a Nosé–Hoover
chain (:mod:`nvalchemi_ase.ops.nose_hoover`) thermostats the atoms and
another one the cell momentum. With p_g = U diag(λ) Uᵀ, κ = λ + tr(p_g)/(3N)
(isotropic: λ = p_ε three times, κ = (1 + 1/N) p_ε) and x = λ δ/W::

    L₁ (positions):     r ← [r U e^x + δ (v U) exprel(x)] Uᵀ
    L₂ (velocities):    v ← [v U e^(−κδ/W) + δ (F/m U) exprel(−κδ/W)] Uᵀ
    L_g,1 (cell):       h ← h U e^x Uᵀ
    L_g,2 (cell force): p_g ← p_g + δ [V(σ_int − P) + Σ m v²/(3N)]   (isotropic: its trace)

σ_int = −(σ − Σ m v vᵀ/V) is the internal pressure tensor (ASE's stress
with the ideal-gas term, sign flipped). The step, as ASE orders it::

    chain_g(½dt) chain(½dt) L_g,2(½dt) L₂(½dt) L₁(dt) L_g,1(dt)
    F, σ
    L₂(½dt) L_g,2(½dt) chain(½dt) chain_g(½dt)

Reference: G. J. Martyna, D. J. Tobias and M. L. Klein, J. Chem. Phys. 101,
4177 (1994), doi:10.1063/1.467468.
"""

from __future__ import annotations

import torch

from nvalchemi_ase.ops.segment import segment_broadcast


def exprel(x: torch.Tensor) -> torch.Tensor:
    """(eˣ − 1)/x, 1 at x = 0 (scipy's ``exprel``)."""
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), torch.expm1(safe) / safe)


def eigen(p_cell: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(λ [B, 3], U [B, 3, 3])`` of the symmetric cell momenta (isotropic: p_ε three times, U = I)."""
    if p_cell.shape[-1] == 1:
        eye = torch.eye(3, dtype=p_cell.dtype, device=p_cell.device)
        return p_cell.view(-1, 1).expand(-1, 3), eye.expand(p_cell.shape[0], 3, 3)
    values, vectors = torch.linalg.eigh(p_cell)
    return values, vectors


def _in_basis(vectors: torch.Tensor, basis: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` rows times each system's U."""
    return torch.einsum("nj,njk->nk", vectors, segment_broadcast(basis, batch_idx))


def _out_of_basis(vectors: torch.Tensor, basis: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` rows times each system's Uᵀ."""
    return torch.einsum("nk,njk->nj", vectors, segment_broadcast(basis, batch_idx))


def move_positions(
    positions: torch.Tensor,
    velocities: torch.Tensor,
    p_cell: torch.Tensor,
    mass: torch.Tensor,
    batch_idx: torch.Tensor,
    delta: float,
) -> torch.Tensor:
    """L₁ over δ: the new positions ``[N, 3]`` (W ``mass`` ``[B]``)."""
    values, basis = eigen(p_cell)
    x = segment_broadcast(values * delta / mass.unsqueeze(1), batch_idx)
    r, v = _in_basis(positions, basis, batch_idx), _in_basis(velocities, basis, batch_idx)
    return _out_of_basis(r * torch.exp(x) + delta * v * exprel(x), basis, batch_idx)


def kick_velocities(
    velocities: torch.Tensor,
    forces: torch.Tensor,
    masses: torch.Tensor,
    p_cell: torch.Tensor,
    mass: torch.Tensor,
    num_atoms: torch.Tensor,
    batch_idx: torch.Tensor,
    delta: float,
) -> torch.Tensor:
    """L₂ over δ: the new velocities ``[N, 3]`` (``num_atoms`` N float ``[B]``)."""
    values, basis = eigen(p_cell)
    trace = p_cell.diagonal(dim1=-2, dim2=-1).sum(-1) * (3.0 if p_cell.shape[-1] == 1 else 1.0)
    kappa = values + (trace / (3.0 * num_atoms)).unsqueeze(1)
    x = segment_broadcast(-kappa * delta / mass.unsqueeze(1), batch_idx)
    v = _in_basis(velocities, basis, batch_idx)
    acceleration = _in_basis(forces / masses.unsqueeze(1), basis, batch_idx)
    return _out_of_basis(v * torch.exp(x) + delta * acceleration * exprel(x), basis, batch_idx)


def move_cell(cell: torch.Tensor, p_cell: torch.Tensor, mass: torch.Tensor, delta: float) -> torch.Tensor:
    """L_g,1 over δ: the new cell ``[B, 3, 3]`` (h U e^(λδ/W) Uᵀ)."""
    values, basis = eigen(p_cell)
    growth = torch.exp(values * delta / mass.unsqueeze(1)).unsqueeze(1)
    return ((cell @ basis) * growth) @ basis.transpose(-1, -2)


def cell_force(
    stress: torch.Tensor,
    volume: torch.Tensor,
    pressure: torch.Tensor,
    twice_kinetic: torch.Tensor,
    num_atoms: torch.Tensor,
    isotropic: bool,
) -> torch.Tensor:
    """The force on p_g: ``[B, 3, 3]``, or ``[B, 1, 1]`` (its trace) when isotropic.

    ``stress`` is ASE's with the ideal-gas term ``[B, 3, 3]``, ``pressure``
    the target ``[B]`` (eV/Å³), ``twice_kinetic`` Σ m v² ``[B]``.
    """
    V = volume.view(-1, 1, 1)
    if isotropic:
        internal = -stress.diagonal(dim1=-2, dim2=-1).sum(-1) / 3
        force = 3 * volume * (internal - pressure) + twice_kinetic / num_atoms
        return force.view(-1, 1, 1)
    eye = torch.eye(3, dtype=stress.dtype, device=stress.device)
    pv = V * (-stress - pressure.view(-1, 1, 1) * eye)
    return pv + (twice_kinetic / (3 * num_atoms)).view(-1, 1, 1) * eye


def barostat_mass(
    kT: torch.Tensor, pdamp: torch.Tensor, num_atoms: torch.Tensor, isotropic: bool
) -> torch.Tensor:
    """``[B]`` W: (3N + 3) kT τ_p² isotropic, (N + 1) kT τ_p² full (τ_p internal time)."""
    if isotropic:
        return (3 * num_atoms + 3) * kT * pdamp**2
    return (num_atoms + 1) * kT * pdamp**2
