"""Evaluate a few dozen ASE structures in one batched call and check them against ASE.

Builds 40 rattled argon structures of mixed sizes and boundary conditions
(bulk crystals, triclinic cells, slabs, clusters), evaluates them all at once
with the batched Lennard-Jones model, prints energies and the largest force
per system, and checks every number against ASE's own LennardJones calculator.

Run:  python examples/batch_energies.py [--systems 40] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase import Batch, BatchedCalculator, LennardJones

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def structures(count: int, seed: int = 0) -> list[Atoms]:
    """Rattled argon: cubic and primitive bulk of several sizes, slabs and clusters."""
    rng = np.random.default_rng(seed)
    made = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(int(rng.integers(1, 4)))
        elif kind == 1:
            atoms = bulk("Ar", "fcc", a=5.3).repeat(tuple(int(n) for n in rng.integers(2, 5, 3)))
        elif kind == 2:
            atoms = fcc111("Ar", size=(2, 2, int(rng.integers(2, 5))), a=5.26, vacuum=5.0)
        else:
            atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
            atoms.pbc = False  # a cluster cut from the crystal
            atoms.cell = np.zeros((3, 3))
        atoms.rattle(0.1, seed=int(rng.integers(1 << 30)))
        made.append(atoms)
    return made


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=40)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    systems = structures(args.systems)
    calc = BatchedCalculator(LennardJones(**ARGON), device=args.device)
    batch = Batch.from_atoms(systems, device=calc.device)
    print(f"{batch.num_graphs} systems, {batch.num_nodes} atoms, on {batch.device} in {batch.dtype}")

    start = time.perf_counter()
    calc.calculate_batch(systems[:1])  # the first call loads the neighbour-list kernels (seconds)
    print(f"kernels loaded in {time.perf_counter() - start:.1f} s (once per process)")

    start = time.perf_counter()
    results = calc.calculate_batch(systems, ("energy", "forces", "stress"))
    batched_s = time.perf_counter() - start

    start = time.perf_counter()
    worst = 0.0
    print(f"{'system':>6} {'atoms':>6} {'pbc':>8} {'energy/eV':>14} {'fmax/(eV/Å)':>12}")
    for k, (atoms, result) in enumerate(zip(systems, results, strict=True)):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        energy = reference.get_potential_energy()
        worst = max(worst, abs(result["energy"] - energy) / max(abs(energy), 1e-12))
        worst = max(worst, float(np.abs(result["forces"] - reference.get_forces()).max()))
        fmax = float(np.linalg.norm(result["forces"], axis=1).max())
        pbc = "".join("T" if p else "F" for p in atoms.pbc)
        print(f"{k:>6} {len(atoms):>6} {pbc:>8} {result['energy']:>14.8f} {fmax:>12.6f}")
    ase_s = time.perf_counter() - start

    print(f"batched call: {batched_s * 1e3:.1f} ms; ASE, one system at a time: {ase_s * 1e3:.1f} ms")
    print(f"largest difference from ASE's LennardJones (relative energy / absolute force): {worst:.2e}")
    return worst


if __name__ == "__main__":
    main()
