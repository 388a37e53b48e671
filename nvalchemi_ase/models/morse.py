"""Morse potential, equal to ``ase.calculators.morse.MorsePotential``.

V(r) = ε[e^{−2ρ₀(r/r₀ − 1)} − 2e^{−ρ₀(r/r₀ − 1)}], multiplied by the quintic
smoothstep cutoff that goes from 1 at rcut1·r₀ to 0 at rcut2·r₀.

Reference: P. M. Morse, Phys. Rev. 34, 57 (1929), doi:10.1103/PhysRev.34.57.
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.pair import PairPotential, kernels


class Morse(PairPotential):
    """Batched Morse potential with ASE's parameters and defaults.

    Parameters
    ----------
    epsilon
        eV, the well depth. Default 1.0.
    rho0
        Exponential prefactor. Default 6.0.
    r0
        Å, the minimum distance. Default 1.0.
    rcut1, rcut2
        Start and end of the smooth cutoff, in units of r0. Defaults 1.9 and 2.7.
    skin
        Å, the neighbour list's reuse margin (keyword only; not in ASE).
        ``None`` means 0.3·r0 (as Lennard-Jones' 0.3σ).
    max_neighbors, use_kernel
        Neighbour-list and evaluation settings (keyword only; not in ASE).
    """

    def __init__(
        self,
        epsilon: float = 1.0,
        rho0: float = 6.0,
        r0: float = 1.0,
        rcut1: float = 1.9,
        rcut2: float = 2.7,
        *,
        skin: float | None = None,
        max_neighbors: int | None = None,
        use_kernel: bool = True,
    ) -> None:
        if not r0 > 0.0 or not rcut2 > rcut1:
            raise ValueError(f"need r0 > 0 and rcut2 > rcut1, got r0={r0}, rcut1={rcut1}, rcut2={rcut2}")
        skin = 0.3 * r0 if skin is None else skin
        super().__init__(rcut2 * r0, skin=skin, max_neighbors=max_neighbors, use_kernel=use_kernel)
        self.epsilon, self.rho0, self.r0, self.rcut1, self.rcut2 = epsilon, rho0, r0, rcut1, rcut2

    @property
    def kernel_terms(self) -> Any:
        return kernels().morse_terms

    def kernel_parameters(self) -> torch.Tensor:
        values = [self.epsilon, self.rho0, self.r0, self.rcut1 * self.r0, self.rcut2 * self.r0, 0.0, 0.0, 0.0]
        return torch.tensor(values, dtype=torch.float64)  # padded to the kernel's PARAMETERS

    def todict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "rho0": self.rho0,
            "r0": self.r0,
            "rcut1": self.rcut1,
            "rcut2": self.rcut2,
        }

    def pair_terms(self, r2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.sqrt(r2)
        expf = torch.exp(self.rho0 * (1.0 - r / self.r0))
        energy = self.epsilon * expf * (expf - 2.0)
        d_energy = (-2.0 * self.epsilon * self.rho0 / self.r0) * expf * (expf - 1.0)
        cut, d_cut = quintic_cutoff(r, self.rcut1 * self.r0, self.rcut2 * self.r0)
        return energy * cut, (d_energy * cut + energy * d_cut) / r


def quintic_cutoff(r: torch.Tensor, r_in: float, r_out: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Smoothstep 6s⁵ − 15s⁴ + 10s³ with s = 1 − (r − r_in)/(r_out − r_in), and its r-derivative."""
    s = 1.0 - (r - r_in) / (r_out - r_in)
    between = ((s > 0.0) & (s < 1.0)).to(r.dtype)
    value = (s >= 1.0).to(r.dtype) + between * (6.0 * s**5 - 15.0 * s**4 + 10.0 * s**3)
    slope = -between * (30.0 * s**4 - 60.0 * s**3 + 30.0 * s**2) / (r_out - r_in)
    return value, slope
