"""Pretrained potentials batched against each package's own ASE calculator, in one run, as ratios.

1. One energy + forces call on 8 and 32 structures: ``BatchedCalculator(load(name))``
   on the whole list against the package's calculator one system at a time
   (both warmed up; repeats interleaved, medians compared).
2. 100 steps of look-alike ``Langevin`` on 16 systems against ASE's ``Langevin``
   with the package's calculator, system by system (``--md-steps``).

Structures: rattled copper crystals of 4 to 32 atoms (every family knows Cu).

Run:  python benchmarks/bench_mlip.py [--models 7net-0 chgnet] [--device cpu|cuda] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from common import machine

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md.langevin import Langevin
from nvalchemi_ase.models import load


def own_calculator(name: str, device: str) -> Callable[[], object]:
    """A factory of the package's own ASE calculator for ``name``."""
    if name.startswith("7net"):
        from sevenn.calculator import SevenNetCalculator

        return lambda: SevenNetCalculator(name, device=device)
    if name.startswith("chgnet"):
        from chgnet.model.dynamics import CHGNetCalculator

        shared = CHGNetCalculator(use_device=device)  # loads the weights once
        return lambda: shared
    if name.startswith("mace:"):
        from mace.calculators import MACECalculator

        return lambda: MACECalculator(model_paths=name[5:], device=device, default_dtype="float64")
    raise SystemExit(f"no own-calculator baseline known for {name}")


def copper(count: int, seed: int = 0) -> list[Atoms]:
    sizes = [(1, 1, 1), (2, 1, 1), (2, 2, 1), (2, 2, 2)]  # 4, 8, 16, 32 atoms
    systems = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.62, cubic=True).repeat(sizes[k % len(sizes)])
        atoms.rattle(0.05, seed=seed + k)
        systems.append(atoms)
    return systems


def interleaved(
    first: Callable[[], object], second: Callable[[], object], repeats: int
) -> tuple[float, float]:
    """Median seconds of each, measured in alternation after one warm-up call of each."""
    first(), second()
    a, b = [], []
    for _ in range(repeats):
        for function, times in ((first, a), (second, b)):
            start = time.perf_counter()
            function()
            times.append(time.perf_counter() - start)
    return statistics.median(a), statistics.median(b)


def single_point(name: str, count: int, device: str, repeats: int) -> tuple[float, float]:
    systems = copper(count)
    batched = BatchedCalculator(load(name), device=device)
    make = own_calculator(name, device)
    calculators = [make() for _ in systems]

    def ours() -> None:
        batched.calculate_batch(systems, ["energy", "forces"])

    def theirs() -> None:
        for atoms, calc in zip(systems, calculators, strict=True):
            calc.calculate(atoms.copy(), ["energy", "forces"], ["positions"])

    return interleaved(ours, theirs, repeats)


def langevin(name: str, count: int, steps: int, device: str) -> tuple[float, float]:
    from ase.md.langevin import Langevin as AseLangevin

    systems = copper(count, seed=100)
    calc = BatchedCalculator(load(name), device=device)
    ours = [atoms.copy() for atoms in systems]
    for atoms in ours:
        atoms.calc = calc
    rngs = [np.random.default_rng(k) for k in range(count)]
    dyn = Langevin(ours, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False, rng=rngs)
    dyn.run(1)  # build lists, warm up
    start = time.perf_counter()
    dyn.run(steps)
    batched = time.perf_counter() - start

    make = own_calculator(name, device)
    start = time.perf_counter()
    for k, atoms in enumerate(systems):
        atoms = atoms.copy()
        atoms.calc = make()
        AseLangevin(
            atoms, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False, rng=np.random.default_rng(k)
        ).run(steps)
    return batched, time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["7net-0", "chgnet"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--md-systems", type=int, default=16)
    parser.add_argument("--md-steps", type=int, default=100, help="0 skips the Langevin comparison")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    for name in args.models:
        for count in args.sizes:
            ours, theirs = single_point(name, count, args.device, args.repeats)
            print(
                f"{name:>8} energy+forces, {count:3d} structures: batched {ours * 1e3:8.1f} ms, "
                f"own calculator one by one {theirs * 1e3:8.1f} ms -> {theirs / ours:5.2f}x"
            )
        if args.md_steps:
            ours, theirs = langevin(name, args.md_systems, args.md_steps, args.device)
            print(
                f"{name:>8} Langevin {args.md_steps} steps x {args.md_systems} systems: "
                f"look-alike {ours:7.1f} s, ASE + own calculator {theirs:7.1f} s -> {theirs / ours:5.2f}x"
            )


if __name__ == "__main__":
    main()
