"""A screen of barriers: Au adatom hops on Al(100) slabs of several sizes, every band in one batch.

Each band is an ``ase.mep.NEB`` as in ASE's tutorial; the list of bands goes to
our FIRE, which evaluates every moving image of every band in one batched EMT
call per step. The barriers come from ``ase.mep.NEBTools``, as with ASE.

    python examples/neb_screen.py --sizes 2 3 --images 5
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ase import Atoms
from ase.build import add_adsorbate, fcc100
from ase.constraints import FixAtoms
from ase.mep import NEB, NEBTools

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT
from nvalchemi_ase.optimize import FIRE


def end_states(size: int, calculator: BatchedCalculator) -> tuple[Atoms, Atoms]:
    """An Au adatom in a hollow site of a ``size x size`` Al(100) slab, before and after one hop along x."""
    initial = fcc100("Al", size=(size, size, 3), vacuum=6.0)
    add_adsorbate(initial, "Au", 1.7, "hollow")
    initial.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in initial]))
    final = initial.copy()
    final.positions[-1, 0] += initial.cell[0, 0] / size
    ends = [initial, final]
    for atoms in ends:
        atoms.calc = BatchedCalculator(calculator.model, device=calculator.device)
    FIRE(ends, logfile=None).run(fmax=0.02)  # both end states relaxed together
    return initial, final


def main(argv: Sequence[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[2, 3, 4])
    parser.add_argument("--images", type=int, default=7)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    calculator = BatchedCalculator(EMT(), device=args.device)
    bands = []
    for size in args.sizes:
        initial, final = end_states(size, calculator)
        images = [initial] + [initial.copy() for _ in range(args.images - 2)] + [final]
        for image in images[1:-1]:
            image.calc = BatchedCalculator(calculator.model, device=calculator.device)
        band = NEB(images, climb=True, method="improvedtangent")
        band.interpolate()
        bands.append(band)
    FIRE(bands, logfile=None).run(fmax=0.05)  # all bands at once; each stops when it converges
    barriers = []
    for size, band in zip(args.sizes, bands, strict=True):
        barrier, _ = NEBTools(band.images).get_barrier()
        print(f"Al(100) {size}x{size}: Au hop barrier {barrier:.3f} eV")
        barriers.append(barrier)
    return barriers


if __name__ == "__main__":
    main()
