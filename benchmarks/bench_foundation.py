"""Foundation benchmarks, measured in one run and printed as ratios.

1. LJ energy + forces for 64 Ar systems of 108 atoms (rc 8.5 Å): the batched
   model in one call against ASE's ``LennardJones`` system by system.
2. Neighbour list of a 4,000-atom periodic cell: ours (nvalchemiops' cell
   list behind our ``ijS`` wrapper) against matscipy's.

Run:  python benchmarks/bench_foundation.py [--device cpu|cuda] [--systems 64] [--dtype float64]
"""

from __future__ import annotations

import argparse

import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from common import machine, measure
from matscipy.neighbours import neighbour_list as matscipy_neighbour_list

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.models import evaluate
from nvalchemi_ase.neighbors import neighbor_list

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}


def argon_systems(count: int) -> list:
    systems = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)  # 108 atoms
        atoms.rattle(0.1, seed=k)
        systems.append(atoms)
    return systems


def lj_forces(systems: list, device: str, dtype: torch.dtype) -> tuple[float, float]:
    batch = Batch.from_atoms(systems, device=device, dtype=dtype)
    model = LennardJones(**ARGON).to(device)
    batched = measure(lambda: evaluate(model, batch), repeats=5, device=device)

    def ase_loop() -> None:
        for atoms in systems:
            atoms.calc = AseLennardJones(**ARGON)
            atoms.get_forces()

    reference = measure(ase_loop, repeats=1, warmup=0)
    return batched, reference


def neighbour_lists(device: str, dtype: torch.dtype) -> tuple[float, float, int]:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((10, 10, 10))  # 4,000 atoms
    atoms.rattle(0.1, seed=1)
    batch = Batch.from_atoms(atoms, device=device, dtype=dtype)
    ours = measure(lambda: neighbor_list(batch, 8.5), repeats=5, device=device)
    theirs = measure(lambda: matscipy_neighbour_list("ijS", atoms, 8.5), repeats=3)
    pairs = len(neighbor_list(batch, 8.5)[0])
    assert pairs == len(matscipy_neighbour_list("i", atoms, 8.5)), "pair counts differ from matscipy's"
    return ours, theirs, pairs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--systems", type=int, default=64)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    print(f"machine: {machine()}; device {args.device}, {args.dtype}")

    systems = argon_systems(args.systems)
    batched, reference = lj_forces(systems, args.device, dtype)
    atoms = sum(len(a) for a in systems)
    print(
        f"LJ energy+forces, {args.systems} x 108 Ar (rc 8.5 Å): batched {batched * 1e3:.1f} ms, "
        f"ASE system by system {reference * 1e3:.1f} ms -> {reference / batched:.1f}x "
        f"({atoms / batched:.3g} atoms/s)"
    )
    ours, theirs, pairs = neighbour_lists(args.device, dtype)
    print(
        f"neighbour list, 4,000-atom periodic cell (rc 8.5 Å, {pairs} pairs): ours {ours * 1e3:.1f} ms, "
        f"matscipy {theirs * 1e3:.1f} ms -> {theirs / ours:.2f}x"
    )


if __name__ == "__main__":
    main()
