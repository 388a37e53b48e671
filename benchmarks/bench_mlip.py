"""Pretrained potentials batched against each package's own ASE calculator, in one run, as ratios.

1. One energy + forces call on 8 and 32 structures: ``BatchedCalculator(load(name))``
   on the whole list against the package's calculator one system at a time
   (all warmed up; every repeat times each size, ours then theirs, so the sizes
   and both sides share the machine's load; medians compared).
2. 100 steps of look-alike ``Langevin`` on 16 systems against ASE's ``Langevin``
   with the package's calculator, system by system (``--md-steps``).

Structures: rattled copper crystals of 4 to 32 atoms (every family knows Cu).

Torch runs ``--threads`` CPU threads (default 1) on both sides. On a CPU that
other jobs share, two OpenMP threads wait for each other at every operation:
CHGNet's own calculator took 10x longer with 2 threads than with 1 at a load
of 9 on 2 cores, which says nothing about either side's code.

Our float32 networks run with subnormal floats flushed to zero (``AutogradModel``'s
``flush_denormals``); the packages' calculators run as their users run them, with
subnormals kept. ``--flush-theirs`` flushes them on that side too, to measure the
batching alone.

Run:  python benchmarks/bench_mlip.py [--models 7net-0 chgnet] [--device cpu|cuda] [--repeats 3] [--threads 1]
      [--flush-theirs]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
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


def interleaved(pairs: dict[int, tuple[Callable[[], object], ...]], repeats: int) -> dict[int, list[float]]:
    """Median seconds of each function of each size, measured in alternation after a warm-up call each."""
    for functions in pairs.values():
        for function in functions:
            function()
    times: dict[int, list[list[float]]] = {size: [[] for _ in fs] for size, fs in pairs.items()}
    for _ in range(repeats):
        for size, functions in pairs.items():
            for function, spent in zip(functions, times[size], strict=True):
                start = time.perf_counter()
                function()
                spent.append(time.perf_counter() - start)
    return {size: [statistics.median(spent) for spent in each] for size, each in times.items()}


def single_point(name: str, count: int, device: str) -> tuple[Callable[[], object], Callable[[], object]]:
    """One energy+forces evaluation of ``count`` structures: ours batched, and theirs one by one."""
    systems = copper(count)
    batched = BatchedCalculator(load(name), device=device)
    make = own_calculator(name, device)
    calculators = [make() for _ in systems]

    def ours() -> None:
        batched.calculate_batch(systems, ["energy", "forces"])

    def theirs() -> None:
        for atoms, calc in zip(systems, calculators, strict=True):
            calc.calculate(atoms.copy(), ["energy", "forces"], ["positions"])

    return ours, theirs


def langevin(name: str, count: int, steps: int, device: str, chunk: int = 5) -> tuple[float, float]:
    """Seconds for ``steps`` Langevin steps of ``count`` systems: the look-alike on the list, and ASE's
    system by system; the two advance in alternation, ``chunk`` steps at a time, under the same load."""
    from ase.md.langevin import Langevin as AseLangevin

    systems = copper(count, seed=100)
    calc = BatchedCalculator(load(name), device=device)
    ours = [atoms.copy() for atoms in systems]
    for atoms in ours:
        atoms.calc = calc
    rngs = [np.random.default_rng(k) for k in range(count)]
    batched = Langevin(ours, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False, rng=rngs)
    make = own_calculator(name, device)
    theirs = []
    for k, atoms in enumerate(systems):
        atoms = atoms.copy()
        atoms.calc = make()
        rng = np.random.default_rng(k)
        dyn = AseLangevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01, fixcm=False, rng=rng)
        theirs.append(dyn)
    batched.run(1)  # build lists, warm up
    for dyn in theirs:
        dyn.run(1)
    spent = [0.0, 0.0]
    for done in range(0, steps, chunk):
        n = min(chunk, steps - done)
        start = time.perf_counter()
        batched.run(n)
        spent[0] += time.perf_counter() - start
        start = time.perf_counter()
        for dyn in theirs:
            dyn.run(n)
        spent[1] += time.perf_counter() - start
    return spent[0], spent[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["7net-0", "chgnet"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32])
    parser.add_argument("--md-systems", type=int, default=16)
    parser.add_argument("--md-steps", type=int, default=100, help="0 skips the Langevin comparison")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, both sides (default 1)")
    parser.add_argument(
        "--flush-theirs",
        action="store_true",
        help="flush float32 subnormals on the own calculator's threads too (ours does by default): "
        "what is left of the ratio is the batching alone",
    )
    args = parser.parse_args(argv)
    if args.flush_theirs:  # before any torch thread starts: the threads torch starts inherit it
        torch.set_flush_denormal(True)
    torch.set_num_threads(args.threads)
    flushed = "subnormals flushed on " + ("both sides" if args.flush_theirs else "our side only")
    print(f"machine: {machine()}, {args.threads} torch thread(s), {flushed}, load {_load()}")
    for name in args.models:
        pairs = {count: single_point(name, count, args.device) for count in args.sizes}
        for count, (ours, theirs) in interleaved(pairs, args.repeats).items():
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

    print(f"load at the end: {_load()}")


def _load() -> str:
    """The 1, 5 and 15 minute load averages (what else the machine was running)."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
