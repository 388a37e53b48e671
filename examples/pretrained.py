"""A pretrained potential on a ragged list of structures: batched energies, then a batched relaxation.

    python examples/pretrained.py [--model 7net-0] [--systems 6] [--steps 50] [--device cpu|cuda]

The model is any name ``nvalchemi_ase.models.load`` knows (``7net-0``,
``chgnet``, ``mace:my.model``, ...). The structures are copper crystals and
slabs of mixed sizes; ``FIRE`` is our look-alike of ASE's, advancing all of them
at once, each system stopping at its own ``fmax``.
"""

from __future__ import annotations

import argparse

from ase import Atoms
from ase.build import bulk, fcc111

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import load
from nvalchemi_ase.optimize import FIRE


def structures(count: int) -> list[Atoms]:
    """Rattled copper: cubic crystals of 4 and 32 atoms and (111) slabs, in turn."""
    made = []
    for k in range(count):
        if k % 3 == 2:
            atoms = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
            atoms.info.pop("adsorbate_info", None)
        else:
            atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat(1 + k % 3)
        atoms.rattle(0.08, seed=k)
        made.append(atoms)
    return made


def main(argv: list[str] | None = None) -> list[float]:
    """Run it; return the relaxed energies per atom (eV)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="7net-0")
    parser.add_argument("--systems", type=int, default=6)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--fmax", type=float, default=0.05)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)

    calc = BatchedCalculator(load(args.model), device=args.device)
    systems = structures(args.systems)
    before = calc.calculate_batch(systems)  # one batched call for every structure
    for atoms in systems:
        atoms.calc = calc
    FIRE(systems, logfile=None).run(fmax=args.fmax, steps=args.steps)
    after = [atoms.get_potential_energy() / len(atoms) for atoms in systems]
    print(
        f"{args.model}: {len(systems)} structures, FIRE to fmax {args.fmax} eV/Å (at most {args.steps} steps)"
    )
    for k, (atoms, start, end) in enumerate(zip(systems, before, after, strict=True)):
        first = start["energy"] / len(atoms)
        print(f"  {k}: {atoms.get_chemical_formula():>6}  {first:9.4f} -> {end:9.4f} eV/atom")
    return after


if __name__ == "__main__":
    main()
