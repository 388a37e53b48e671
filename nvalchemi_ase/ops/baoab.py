"""Langevin BAOAB at fixed cell, in the scheme of ``ase.md.langevinbaoab.LangevinBAOAB`` (NVT).

With γ = 1/τ_T, c = e^(−γ dt) and ξ a standard normal per component::

    B: v ← v + ½ dt F/m
    A: r ← r + ½ dt v
    O: v ← c v + √(kT) √(1 − c²) ξ / √m
    A: r ← r + ½ dt v
       F ← F(r)
    B: v ← v + ½ dt F/m

ASE writes the O noise prefactor as (σ/√(2γ)) √(1 − e^(−2γ dt)) with
σ = √(2γ kT); it is computed the same way here.

Reference: B. Leimkuhler and C. Matthews, J. Chem. Phys. 138, 174102 (2013),
doi:10.1063/1.4802990.
"""

from __future__ import annotations

import torch


def ornstein_uhlenbeck_coefficients(
    dt: float, kT: torch.Tensor, gamma: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(decay, prefactor)``: e^(−γ dt) and the O noise width × √m.

    Both are shaped like kT (eV) and γ (1/internal time); dt is in internal time.
    """
    sigma = torch.sqrt(2.0 * gamma * kT)
    prefactor = (sigma / torch.sqrt(2.0 * gamma)) * torch.sqrt(1.0 - torch.exp(-2.0 * gamma * dt))
    return torch.exp(-gamma * dt), prefactor


def ornstein_uhlenbeck(
    velocities: torch.Tensor,
    sqrt_masses: torch.Tensor,
    decay: torch.Tensor,
    prefactor: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """O: ``c v + prefactor ξ / √m``.

    Velocities and noise are ``[N, 3]``; ``sqrt_masses`` (√m), decay c and
    prefactor are ``[N, 1]``.
    """
    return velocities * decay + prefactor * (noise / sqrt_masses)


# ---------------------------------------------------------------------- variable cell (NPH / NPT)
# ASE's Langevin-Hoover barostat (Quigley and Probert, J. Chem. Phys. 120, 11432
# (2004), doi:10.1063/1.1755657) in ASE's BAOAB splitting. The cell momentum
# p_ε is ``[B, 1, 1]`` (hydrostatic: volume only) or ``[B, 3, 3]`` (full cell);
# W is the barostat mass, ``[B, 1, 1]``.


def external_stress_tensor(
    value: object, hydrostatic: bool, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """ASE's forms of ``externalstress`` as a ``[1, 1]`` (hydrostatic) or ``[3, 3]`` tensor.

    Hydrostatic: a scalar only. Full cell: a scalar (times the identity), 3
    values (the diagonal), 6 (Voigt xx, yy, zz, yz, xz, xy) or a 3×3 matrix.
    Raises ValueError with ASE's messages.
    """
    stress = torch.as_tensor(value, dtype=dtype).detach().cpu()
    if stress.dim() == 0:
        stress = stress.reshape(-1)
    if hydrostatic:
        if tuple(stress.shape) != (1,):
            raise ValueError(
                "externalstress must be scalar when hydrostatic, "
                f"got '{value}' with shape {tuple(stress.shape)}"
            )
        return stress.reshape(1, 1)
    shape = tuple(stress.shape)
    if shape == (1,):
        return stress * torch.eye(3, dtype=dtype)
    if shape == (3,):
        return torch.diag(stress)
    if shape == (6,):
        xx, yy, zz, yz, xz, xy = stress.unbind()
        return torch.stack([torch.stack([xx, xy, xz]), torch.stack([xy, yy, yz]), torch.stack([xz, yz, zz])])
    if shape == (3, 3):
        return stress
    raise ValueError(
        "externalstress must be scalar, 3-vector (diagonal), 6-vector (Voigt), or 3x3 matrix, "
        f'got "{value}" with shape {shape}'
    )


def heuristic_barostat_mass(P_tau: torch.Tensor, atoms: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """ASE's default W: ``((τ_P / 4) / 1.66 fs · N^(1/6))² × factor``, with τ_P in fs."""
    return (((P_tau / 4.0) / 1.66) * atoms ** (1.0 / 6.0)) ** 2 * factor


def cell_force(
    volume: torch.Tensor,
    stress: torch.Tensor,
    kinetic: torch.Tensor,
    external: torch.Tensor,
    ndof: torch.Tensor,
    hydrostatic: bool,
) -> torch.Tensor:
    """The force on p_ε (ASE's ``force_eps``), ``[B, 1, 1]`` or ``[B, 3, 3]``.

    ``volume`` ``[B]``, ``stress`` ``[B, 3, 3]`` (ASE's sign), ``kinetic`` the
    kinetic tensor Σ m v vᵀ ``[B, 3, 3]``, ``external`` ``[1, 1]`` or
    ``[3, 3]``, ``ndof`` ``[B]``.
    """
    V = volume.view(-1, 1, 1)
    n = ndof.view(-1, 1, 1)
    if hydrostatic:
        two_ke = torch.diagonal(kinetic, dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
        tr_virial = -V * torch.diagonal(stress, dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
        X = 1.0 / (3.0 * V) * (two_ke + tr_virial)
        return 3.0 * V * (X + external) + (3.0 / n) * two_ke
    X = (1.0 / V) * (kinetic + (-V * stress))
    trace = torch.diagonal(kinetic, dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
    return V * (X + external) + (1.0 / n) * trace * torch.eye(3, dtype=stress.dtype, device=stress.device)


def strained_cell(cell: torch.Tensor, p_eps: torch.Tensor, mass: torch.Tensor, dt: float) -> torch.Tensor:
    """Barostat A over ``dt`` (ASE: ½ dt): the new cell ``[B, 3, 3]``.

    Hydrostatic (``p_eps`` ``[B, 1, 1]``): V ← V e^(3 dt p_ε / W), the cell
    scaled by the cube root of the ratio. Full: cell ← cell · expm(dt p_ε / W)ᵀ.
    """
    if p_eps.shape[-1] == 1:
        volume = torch.linalg.det(cell).abs().view(-1, 1, 1)
        new_volume = volume * torch.exp(dt * 3.0 * p_eps / mass)
        return cell * (new_volume / volume) ** (1.0 / 3.0)
    return cell @ torch.linalg.matrix_exp(dt * p_eps / mass).transpose(-1, -2)


def velocity_drag(
    gamma: torch.Tensor, p_eps: torch.Tensor, mass: torch.Tensor, ndof: torch.Tensor, dt: float
):
    """The O move's deterministic factor on velocities, ``[B, 1, 1]`` or ``[B, 3, 3]`` (applied as v · Mᵀ).

    Hydrostatic: e^(−(γ + (1 + 3/N_dof) p_ε/W) dt). Full: expm(−(γ I + G) dt)
    with G = (p_ε + tr(p_ε)/N_dof)/W, the trace added to every element as ASE does.
    """
    g = gamma.view(-1, 1, 1)
    n = ndof.view(-1, 1, 1)
    if p_eps.shape[-1] == 1:
        return torch.exp(-(g + (1.0 + 3.0 / n) * p_eps / mass) * dt)
    trace = torch.diagonal(p_eps, dim1=-2, dim2=-1).sum(-1).view(-1, 1, 1)
    mod = (p_eps + (1.0 / n) * trace) / mass
    eye = torch.eye(3, dtype=p_eps.dtype, device=p_eps.device)
    return torch.linalg.matrix_exp(-(g * eye + mod) * dt)


def cell_ornstein_uhlenbeck(
    p_eps: torch.Tensor, decay: torch.Tensor, prefactor: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """Barostat O: ``c p_ε + prefactor η`` (full cell: η symmetrised, (η + ηᵀ)/2); all ``[B, 1|3, 1|3]``."""
    if p_eps.shape[-1] == 3:
        noise = (noise + noise.transpose(-1, -2)) / 2
    return p_eps * decay + prefactor * noise
