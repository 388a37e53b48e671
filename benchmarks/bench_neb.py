"""A barrier screen: 16 bands of 7 images, Au adatom hops on Al(100) slabs of different sizes.

FIRE to fmax 0.05 with a climbing image (``improvedtangent``), EMT in float64:
ASE's FIRE on ASE's NEB and EMT band by band, against our FIRE on the list of
all 16 bands (every moving image of every band in one batched EMT call per
step), in one run, alternating, median of the repeats. Printed: seconds,
steps, the largest barrier difference (should be ~1e-10 eV) and the ratio.

Run:  python benchmarks/bench_neb.py [--bands 16] [--images 7] [--repeats 3] [--device cpu|cuda]
          [--method improvedtangent|aseneb|eb|spline|string]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from ase.build import add_adsorbate, fcc100
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms
from ase.mep import NEB, NEBTools
from ase.optimize import FIRE as AseFIRE
from common import machine

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT
from nvalchemi_ase.optimize import FIRE

SIZES = [(2, 2, 3), (3, 2, 3), (2, 3, 3), (3, 3, 3), (4, 2, 3), (2, 4, 3), (4, 3, 3), (3, 4, 3)]


def end_states(count: int) -> list[tuple]:
    """``count`` relaxed (initial, final) pairs: sizes from SIZES, hop along x or y (ASE's EMT and FIRE)."""
    pairs = []
    for index in range(count):
        size, axis = SIZES[index % len(SIZES)], (index // len(SIZES)) % 2
        initial = fcc100("Al", size=size, vacuum=6.0)
        add_adsorbate(initial, "Au", 1.7, "hollow")
        initial.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in initial]))
        final = initial.copy()
        final.positions[-1, axis] += initial.cell[axis, axis] / size[axis]
        for atoms in (initial, final):
            atoms.calc = AseEMT()
            AseFIRE(atoms, logfile=None).run(fmax=0.01)
        pairs.append((initial, final))
    return pairs


def bands(pairs: list[tuple], images: int, calculator, method: str) -> list[NEB]:
    result = []
    for initial, final in pairs:
        band_images = [initial.copy() for _ in range(images - 1)] + [final.copy()]
        for image in band_images:
            image.calc = calculator()
        band = NEB(band_images, climb=True, method=method)
        band.interpolate()
        result.append(band)
    return result


def run_ase(pairs: list[tuple], images: int, method: str) -> tuple[float, int, list[float]]:
    todo = bands(pairs, images, AseEMT, method)
    start = time.perf_counter()
    steps = 0
    for band in todo:
        optimizer = AseFIRE(band, logfile=None)
        optimizer.run(fmax=0.05, steps=2000)
        steps += optimizer.nsteps
    return time.perf_counter() - start, steps, [NEBTools(b.images).get_barrier()[0] for b in todo]


def run_ours(pairs: list[tuple], images: int, device: str, method: str) -> tuple[float, int, list[float]]:
    model = EMT()
    todo = bands(pairs, images, lambda: BatchedCalculator(model, device=device, dtype=torch.float64), method)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    optimizer = FIRE(todo, logfile=None)
    optimizer.run(fmax=0.05, steps=2000)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, optimizer.nsteps, [NEBTools(b.images).get_barrier()[0] for b in todo]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bands", type=int, default=16)
    parser.add_argument("--images", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--method", default="improvedtangent")
    args = parser.parse_args()
    print(machine())
    pairs = end_states(args.bands)
    atoms = sum(len(initial) for initial, _ in pairs) * (args.images - 2)
    print(
        f"{args.bands} bands x {args.images} images ({atoms} moving atoms), {args.method}, "
        "FIRE 0.05 climb, EMT float64"
    )
    run_ours(pairs[:2], args.images, args.device, args.method)  # warm-up: kernels, neighbour-list compile
    ase_times, our_times = [], []
    for _ in range(args.repeats):
        ase_time, ase_steps, ase_barriers = run_ase(pairs, args.images, args.method)
        our_time, our_steps, our_barriers = run_ours(pairs, args.images, args.device, args.method)
        ase_times.append(ase_time)
        our_times.append(our_time)
    worst = float(np.max(np.abs(np.subtract(ase_barriers, our_barriers))))
    ase_median, our_median = statistics.median(ase_times), statistics.median(our_times)
    print(f"ASE band by band: {ase_median:.2f} s ({ase_steps} FIRE steps over all bands)")
    print(f"ours, all bands:  {our_median:.2f} s ({our_steps} batched steps, the slowest band's count)")
    print(f"largest barrier difference: {worst:.2e} eV")
    print(f"speed-up: {ase_median / our_median:.1f}x")


if __name__ == "__main__":
    main()
