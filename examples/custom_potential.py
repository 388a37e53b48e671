"""A many-body potential written as a small torch module, with forces and stress by autograd.

The Sutton–Chen potential (Sutton and Chen, Phil. Mag. Lett. 61, 139 (1990),
doi:10.1080/09500839008206493) for copper,

    E = ε Σ_i [ ½ Σ_j (a/r_ij)^n − c √ρ_i ],   ρ_i = Σ_j (a/r_ij)^m,

takes a dozen lines as a ``torch.nn.Module`` over the edge list that
``AutogradModel`` hands it (``edge_index``, ``edge_vectors``, ``batch``: the
layout MACE-style models consume). The adapter turns it into a full model:
forces ``−∂E/∂r`` and stress ``(1/V) ∂E/∂ε`` by one backward pass over the whole
batch. This script evaluates a batch of copper structures, checks forces and
stress against finite differences, relaxes them with FIRE and runs NVE.

Run:  python examples/custom_potential.py [--systems 8] [--steps 200] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk, fcc111

from nvalchemi_ase import Batch
from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, Criterion
from nvalchemi_ase.models import evaluate
from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.ops import segment_sum
from nvalchemi_ase.ops.thermo import kinetic_energy, max_force

CUTOFF = 6.5
"""Å; the smooth switch runs from 5.5 Å to here."""


class SuttonChen(torch.nn.Module):
    """Sutton–Chen energy per system (defaults: copper), smoothly switched off at ``cutoff``."""

    def __init__(self, epsilon=1.2382e-2, c=39.432, a=3.61, n=9, m=6, cutoff=CUTOFF, r_on=5.5) -> None:
        super().__init__()
        self.epsilon, self.c, self.a, self.n, self.m = epsilon, c, a, n, m
        self.cutoff, self.r_on = cutoff, r_on

    def switch(self, r: torch.Tensor) -> torch.Tensor:
        """1 below ``r_on``, a cosine down to 0 at ``cutoff``, 0 beyond."""
        x = ((r - self.r_on) / (self.cutoff - self.r_on)).clamp(0.0, 1.0)
        return 0.5 * (1.0 + torch.cos(math.pi * x))

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        sender = graph.edge_index[0]
        r = graph.edge_vectors.norm(dim=1)  # [E], differentiable in positions and strain
        s = self.switch(r)
        repulsion = segment_sum(s * (self.a / r) ** self.n, sender, len(graph.positions))  # [N]
        density = segment_sum(s * (self.a / r) ** self.m, sender, len(graph.positions))  # [N]
        atom_energy = self.epsilon * (0.5 * repulsion - self.c * torch.sqrt(density))
        return segment_sum(atom_energy, graph.batch, graph.num_systems)  # [B]


def structures(count: int, seed: int = 0) -> list[Atoms]:
    """Rattled copper: cubic bulk, a triclinic cell, a (111) slab and a cluster, in turn."""
    rng = np.random.default_rng(seed)
    made = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
        elif kind == 1:
            atoms = bulk("Cu", "fcc", a=3.63).repeat((3, 2, 2))
        elif kind == 2:
            atoms = fcc111("Cu", size=(2, 2, 3), a=3.61, vacuum=6.0)
        else:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
            atoms.pbc, atoms.cell = False, np.zeros((3, 3))
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        made.append(atoms)
    return made


def energy(model: AutogradModel, atoms: Atoms, device: str) -> float:
    return float(evaluate(model, Batch.from_atoms(atoms, device=device))["energy"][0, 0])


def finite_difference_error(model: AutogradModel, atoms: Atoms, device: str, step: float = 1e-5) -> float:
    """Largest difference of a few force components and the stress from central differences."""
    outputs = evaluate(model, Batch.from_atoms(atoms, device=device), ("energy", "forces", "stress"))
    worst = 0.0
    for a, d in ((0, 0), (1, 2), (len(atoms) - 1, 1)):
        moved = [atoms.copy(), atoms.copy()]
        moved[0].positions[a, d] += step
        moved[1].positions[a, d] -= step
        numeric = -(energy(model, moved[0], device) - energy(model, moved[1], device)) / (2 * step)
        worst = max(worst, abs(numeric - float(outputs["forces"][a, d])))
    for i, j in ((0, 0), (0, 1), (2, 2)):
        strained = []
        for sign in (1.0, -1.0):
            strain = np.eye(3)
            strain[i, j] += 0.5 * sign * step
            strain[j, i] += 0.5 * sign * step
            copy = atoms.copy()
            copy.set_cell(atoms.cell.array @ strain, scale_atoms=True)
            strained.append(energy(model, copy, device))
        numeric = (strained[0] - strained[1]) / (2 * step) / atoms.get_volume()
        worst = max(worst, abs(numeric - float(outputs["stress"][0, i, j])))
    return worst


def report(systems: list[Atoms], batch: Batch, outputs: dict[str, torch.Tensor]) -> None:
    """One line per system: atoms, energy, largest force, pressure (NaN without a cell)."""
    fmax = max_force(outputs["forces"], batch.batch_idx, batch.num_graphs)
    pressure = -outputs["stress"].diagonal(dim1=1, dim2=2).mean(dim=1)
    print(f"{batch.num_graphs} systems, {batch.num_nodes} atoms, on {batch.device}")
    print(f"{'system':>6} {'atoms':>6} {'energy/eV':>12} {'fmax/(eV/Å)':>12} {'p/(eV/Å³)':>11}")
    for b, atoms in enumerate(systems):
        print(
            f"{b:>6} {len(atoms):>6} {float(outputs['energy'][b, 0]):>12.6f} {float(fmax[b]):>12.6f} "
            f"{float(pressure[b]):>11.2e}"
        )


def relax_then_run(model: AutogradModel, batch: Batch, steps: int) -> None:
    """FIRE to fmax < 0.01 eV/Å, then NVE from random velocities (about 300 K)."""
    relax = FIRE(model, n_steps=steps, convergence_hook=ConvergenceHook(Criterion("fmax", 0.01)))
    relax.run(batch)
    relaxed = max_force(batch.forces, batch.batch_idx, batch.num_graphs).max()
    print(f"FIRE: largest force after {relax.step_count} steps: {float(relaxed):.4f} eV/Å")

    noise = torch.randn(batch.positions.shape, generator=torch.Generator().manual_seed(0))
    batch.velocities = noise.to(batch.positions) * 0.02  # Å per ASE time unit
    batch.forces = None  # recomputed when the run starts

    def total_energy() -> float:
        kinetic = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
        return float((batch.energy.view(-1) + kinetic).sum())

    md = NVE(model, dt=2.0)
    md.run(batch, n_steps=0)
    start = total_energy()
    md.run(batch, n_steps=steps)
    print(f"NVE, {steps} steps of 2 fs: total energy {start:.6f} -> {total_energy():.6f} eV")


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")

    model = AutogradModel(SuttonChen(), cutoff=CUTOFF).to(device)
    systems = structures(args.systems)
    batch = Batch.from_atoms(systems, device=device)
    report(systems, batch, evaluate(model, batch, ("energy", "forces", "stress")))
    worst = finite_difference_error(model, systems[1], device)
    print(f"largest difference from finite differences (forces eV/Å, stress eV/Å³): {worst:.2e}")
    relax_then_run(model, batch, args.steps)
    return worst


if __name__ == "__main__":
    main()
