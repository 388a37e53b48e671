"""The pair kernel alone: time a visit of a listed pair, and what the second thread gives.

Workload: bench_lammps's LJ argon (fcc, a 5.26 Å, rattled 0.05 Å; B cells of 108 atoms
or one 4,000-atom cell), σ 3.4 Å, ε 0.0104 eV, rc 8.5 Å shifted, skin 1.02 Å,
float64, energies and forces (no virials, as in an NVE step). Alternated calls on
the same list, medians printed:

- image vectors made once per list (what a CPU step runs) against made in the kernel
  from the integer shifts (what a list made afresh each step runs), on one thread;
- one thread against a launch split over two (the calling thread runs the first
  share, a pool thread the second), with each share's wall and CPU time and how
  long after the first the second starts: the split is balanced when the shares'
  CPU times are equal, and costs nothing when they add up to the one-thread time.

Run:  python benchmarks/bench_pair_kernel.py [--workloads 108x8,108x32,4000x1] [--repeats 15]
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from bench_lammps import EPSILON, RC, SIGMA, SKIN, workload
from common import machine

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.models.pair_kernel import pair_sums
from nvalchemi_ase.ops import warp_launch


class _TimedShares:
    """Wraps warp_launch's recorded launches to log each share's (first row, start, end, CPU seconds)."""

    def __init__(self) -> None:
        self.log: list[tuple[int, float, float, float]] = []
        self.recorded = warp_launch._recorded

    def __call__(self, kernel: Any, first: int, rows: int, device: torch.device, inputs: list[Any]) -> Any:
        command = self.recorded(kernel, first, rows, device, inputs)
        log = self.log

        class Share:
            @staticmethod
            def launch() -> None:
                start, cpu = time.perf_counter(), time.thread_time()
                command.launch()
                log.append((first, start, time.perf_counter(), time.thread_time() - cpu))

        return Share


def _seconds(call: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        call()
    return (time.perf_counter() - start) / count


def _measure(name: str, repeats: int) -> None:
    model = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, skin=SKIN)
    batch = Batch.from_atoms(workload(name), device="cpu", dtype=torch.float64)
    neighbors = model.neighbor_list.update(batch)
    in_kernel = copy.copy(neighbors)
    in_kernel.reused = False  # the kernel makes the image vectors from the shifts
    parameters = model._parameters_on(batch.device)
    visits = int(neighbors.counts.sum())
    calls = max(3, 2_000_000 // visits)
    made_once = functools.partial(
        pair_sums, model.kernel_terms, parameters, batch.positions, neighbors, model.cutoff, False
    )
    made_per_visit = functools.partial(
        pair_sums, model.kernel_terms, parameters, batch.positions, in_kernel, model.cutoff, False
    )
    for threads in (1, 2):  # compiled, loaded and recorded before any timing
        torch.set_num_threads(threads)
        made_once(), made_per_visit()
    timed = _TimedShares()
    once: list[float] = []
    per_visit: list[float] = []
    split: list[float] = []
    shares = []
    for repeat in range(repeats):
        torch.set_num_threads(1)
        pair = [(once, made_once), (per_visit, made_per_visit)]
        for times, call in pair if repeat % 2 else pair[::-1]:
            times.append(_seconds(call, calls))
        torch.set_num_threads(2)
        warp_launch._recorded = timed
        try:
            timed.log.clear()
            split.append(_seconds(made_once, calls))
            shares.append(list(timed.log[-2:]))  # the shares of the last call
        finally:
            warp_launch._recorded = timed.recorded
    one, made, two = (statistics.median(times) for times in (once, per_visit, split))
    print(f"\n{name}: {visits:,} visits a call (full list)")
    print(f"  one thread, image vectors made once: {one * 1e3:7.3f} ms, {one / visits * 1e9:.2f} ns a visit")
    print(f"  one thread, made in the kernel:      {made * 1e3:7.3f} ms ({made / one:.2f}x the time)")
    print(f"  two threads:                         {two * 1e3:7.3f} ms ({one / two:.2f}x faster than one)")
    by_share: dict[int, list[tuple[float, float, float]]] = {}
    for log in shares:
        base = min(entry[1] for entry in log)
        for first, start, end, cpu in log:
            by_share.setdefault(first, []).append((end - start, cpu, start - base))
    for first, values in sorted(by_share.items()):
        wall, cpu, late = (statistics.median(v[k] for v in values) for k in range(3))
        print(
            f"    share from row {first:>5}: {wall * 1e3:.3f} ms wall, {cpu * 1e3:.3f} ms CPU, "
            f"starts {late * 1e6:.0f} us after the first"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="108x8,108x32,4000x1")
    parser.add_argument("--repeats", type=int, default=15, help="alternated repeats; medians are printed")
    args = parser.parse_args()
    print(f"machine: {machine()}; float64, energies and forces")
    saved = torch.get_num_threads()
    try:
        for name in args.workloads.split(","):
            _measure(name, args.repeats)
    finally:
        torch.set_num_threads(saved)


if __name__ == "__main__":
    main()
