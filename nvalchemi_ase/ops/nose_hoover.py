"""Nosé–Hoover chains, in the scheme of ``ase.md.nose_hoover_chain.NoseHooverChainNVT``.

Per system, a chain of M thermostat positions η_j and momenta p_η,j with
masses Q₀ = 3N kT τ², Q_j = kT τ² (τ = ``tdamp``; the first link drives the
3N atomic degrees of freedom, as ASE assumes). One step is the Trotter split::

    chain(dt/2) → v ← v + ½ dt F/m → r ← r + dt v → F(r) → v ← v + ½ dt F/m → chain(dt/2)

and ``chain(δ)`` applies, ``tloop`` times for each fourth-order Suzuki–Yoshida
weight w, the sub-step with δ' = w δ / tloop (G₀ = Σ m v² − n kT, n = 3N,
G_j = p²_η,j−1/Q_j−1 − kT)::

    for j = M−1 … 0:  p_η,j ← p_η,j e^(−δ'/4 · p_η,j+1/Q_j+1); p_η,j += δ'/2 G_j; (same factor again)
    η ← η + δ' p_η/Q
    v ← v e^(−δ' p_η,0/Q₀)
    for j = 0 … M−1:  (as above)

(the factor with p_η,j+1 only where j < M−1). The velocities are scaled once
at the end by the product of the factors; Σ m v² is carried along as a scalar
per system instead of being summed again.

References: G. J. Martyna, M. L. Klein and M. E. Tuckerman, J. Chem. Phys. 97,
2635 (1992), doi:10.1063/1.463940; H. Yoshida, Phys. Lett. A 150, 262 (1990),
doi:10.1016/0375-9601(90)90092-3.
"""

from __future__ import annotations

import torch

FOURTH_ORDER_WEIGHTS = (
    1 / (2 - 2 ** (1 / 3)),
    -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)),
    1 / (2 - 2 ** (1 / 3)),
)
"""Suzuki-Yoshida weights of the fourth-order composition (they sum to 1)."""


def chain_masses(kT: torch.Tensor, tdamp: torch.Tensor, dof: torch.Tensor, length: int) -> torch.Tensor:
    """``[B, M]`` Q: n kT τ² for the first link, kT τ² for the others.

    kT in eV, τ in internal time; n (float ``[B]``) the degrees of freedom the
    first link drives: 3N for the atoms (ASE), 9 for an MTK barostat's cell.
    """
    first = dof * kT * tdamp**2
    rest = (kT * tdamp**2).unsqueeze(1).expand(-1, length - 1)
    return torch.cat([first.unsqueeze(1), rest], dim=1)


def thermostat_energy(
    eta: torch.Tensor, p_eta: torch.Tensor, masses: torch.Tensor, kT: torch.Tensor, dof: torch.Tensor
) -> torch.Tensor:
    """``[B]`` n kT η₀ + kT Σ_{j>0} η_j + Σ p²_η/(2Q), eV (n = ``dof``, 3N for the atoms' chain).

    Add E_pot + E_kin for the conserved energy.
    """
    return dof * kT * eta[:, 0] + kT * eta[:, 1:].sum(dim=1) + (0.5 * p_eta.square() / masses).sum(dim=1)


def integrate_chain(
    twice_kinetic: torch.Tensor,
    eta: torch.Tensor,
    p_eta: torch.Tensor,
    masses: torch.Tensor,
    kT: torch.Tensor,
    dof: torch.Tensor,
    delta: float,
    tloop: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Advance the chains by ``delta``; returns ``(scale [B], eta [B, M], p_eta [B, M])``.

    ``twice_kinetic`` is Σ m v² per system (eV) and ``dof`` the degrees of
    freedom the first link drives (3N); multiply each system's velocities
    by ``scale``. A barostat's chain passes Σ p_g²/W and its cell's degrees
    of freedom, and scales the cell momenta.
    """
    scale = torch.ones_like(twice_kinetic)
    p = list(p_eta.unbind(dim=1))
    q = list(masses.unbind(dim=1))
    for _ in range(tloop):
        for weight in FOURTH_ORDER_WEIGHTS:
            step = weight * delta / tloop
            for j in reversed(range(len(p))):
                p[j] = _advance_link(p, q, j, twice_kinetic, kT, dof, step)
            eta = eta + step * torch.stack(p, dim=1) / masses
            factor = torch.exp(-step * p[0] / q[0])
            scale = scale * factor
            twice_kinetic = twice_kinetic * factor.square()
            for j in range(len(p)):
                p[j] = _advance_link(p, q, j, twice_kinetic, kT, dof, step)
    return scale, eta, torch.stack(p, dim=1)


def _advance_link(
    p: list[torch.Tensor],
    q: list[torch.Tensor],
    j: int,
    twice_kinetic: torch.Tensor,
    kT: torch.Tensor,
    dof: torch.Tensor,
    step: float,
) -> torch.Tensor:
    """New p_η,j: damped by the next link for a quarter step, driven by G_j for a half, damped again."""
    value = p[j]
    damping = torch.exp(-(step / 4) * p[j + 1] / q[j + 1]) if j < len(p) - 1 else None
    if damping is not None:
        value = value * damping
    force = twice_kinetic - dof * kT if j == 0 else p[j - 1].square() / q[j - 1] - kT
    value = value + (step / 2) * force
    if damping is not None:
        value = value * damping
    return value
