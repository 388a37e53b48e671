"""Lennard-Jones, equal to ``ase.calculators.lj.LennardJones`` in both its cutoff modes.

u(r) = 4ε[(σ/r)¹² − (σ/r)⁶] for r ≤ rc.

* ``smooth=False`` (ASE's default): the energy is shifted by −u(rc) for every
  pair inside rc; forces are not shifted and jump to zero at rc.
* ``smooth=True``: no shift; u is multiplied by the switch (in x = r²,
  a = ro², b = rc²) S = (b − x)²(b + 2x − 3a)/(b − a)³ for a ≤ x < b, 1 below
  a, 0 from b, so energy and forces are C¹ (the switch of JAX-MD and HOOMD).

Reference: J. E. Lennard-Jones, Proc. R. Soc. Lond. A 106, 463 (1924),
doi:10.1098/rspa.1924.0082.
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.pair import PairPotential, kernels


class LennardJones(PairPotential):
    """Batched Lennard-Jones with ASE's parameters, defaults and energy definition.

    Parameters
    ----------
    sigma
        Å; the minimum is at 2^(1/6)σ. Default 1.0.
    epsilon
        eV, the well depth. Default 1.0.
    rc
        Å, the cutoff; ``None`` means 3σ.
    ro
        Å, onset of the smooth switch; ``None`` means 0.66·rc. Read only when ``smooth``.
    smooth
        Switch mode (see the module docstring). Default False: shifted energy.
    skin
        Å, the neighbour list's reuse margin (keyword only; not in ASE).
        ``None`` means 0.3σ, LAMMPS's default in LJ units (1.02 Å for argon).
    max_neighbors, use_kernel
        Neighbour-list and evaluation settings (keyword only; not in ASE).
    """

    def __init__(
        self,
        sigma: float = 1.0,
        epsilon: float = 1.0,
        rc: float | None = None,
        ro: float | None = None,
        smooth: bool = False,
        *,
        skin: float | None = None,
        max_neighbors: int | None = None,
        use_kernel: bool = True,
    ) -> None:
        rc = 3.0 * sigma if rc is None else rc
        skin = 0.3 * sigma if skin is None else skin
        ro = 0.66 * rc if ro is None else ro
        if not sigma > 0.0 or not rc > 0.0:
            raise ValueError(f"sigma and rc must be positive, got sigma={sigma}, rc={rc}")
        if smooth and not 0.0 <= ro < rc:
            raise ValueError(f"smooth mode needs 0 <= ro < rc, got ro={ro}, rc={rc}")
        super().__init__(rc, skin=skin, max_neighbors=max_neighbors, use_kernel=use_kernel)
        self.sigma, self.epsilon, self.rc, self.ro, self.smooth = sigma, epsilon, rc, ro, smooth

    @property
    def kernel_terms(self) -> Any:
        return kernels().lennard_jones_smooth_terms if self.smooth else kernels().lennard_jones_terms

    def kernel_parameters(self) -> torch.Tensor:
        shift = 4.0 * self.epsilon * ((self.sigma / self.rc) ** 12 - (self.sigma / self.rc) ** 6)
        values = [self.sigma, self.epsilon, self.rc**2, self.ro**2, float(self.smooth), shift, 0.0, 0.0]
        return torch.tensor(values, dtype=torch.float64)  # padded to the kernel's PARAMETERS

    def todict(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "epsilon": self.epsilon,
            "rc": self.rc,
            "ro": self.ro,
            "smooth": self.smooth,
        }

    def pair_terms(self, r2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s2 = self.sigma**2 / r2
        c6 = s2 * s2 * s2
        c12 = c6 * c6
        energy = 4.0 * self.epsilon * (c12 - c6)
        du = -24.0 * self.epsilon * (2.0 * c12 - c6) / r2
        if not self.smooth:
            shift = 4.0 * self.epsilon * ((self.sigma / self.rc) ** 12 - (self.sigma / self.rc) ** 6)
            return energy - shift, du
        switch, d_switch = smooth_switch(r2, self.rc**2, self.ro**2)
        return energy * switch, switch * du + 2.0 * d_switch * energy


def smooth_switch(x: torch.Tensor, b: float, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The C¹ switch S(x) and dS/dx in squared distances: 1 below a, 0 from b."""
    inside = (x >= a) & (x < b)
    span = (b - a) ** 3
    value = torch.where(x < a, 1.0, torch.where(inside, (b - x) ** 2 * (b + 2.0 * x - 3.0 * a) / span, 0.0))
    slope = torch.where(inside, 6.0 * (b - x) * (a - x) / span, 0.0)
    return value.to(x.dtype), slope.to(x.dtype)
