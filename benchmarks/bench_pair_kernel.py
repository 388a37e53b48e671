"""The pair kernel alone: time a visit of a listed pair, and what the second thread gives.

Workload: bench_lammps's LJ argon (fcc, a 5.26 Å, rattled 0.05 Å; B cells of 108 atoms
or one 4,000-atom cell), σ 3.4 Å, ε 0.0104 eV, rc 8.5 Å shifted, skin 1.02 Å,
float64, energies and forces (no virials, as in an NVE step). Alternated calls on
the same list, medians printed:

- image vectors made once per list (what a CPU step runs) against made in the kernel
  from the integer shifts (what a list made afresh each step runs), on one thread;
- the half list (each pair once, Newton's third law; what a CPU step runs now) against the
  full list (each pair twice), alternated, on one thread and on two;
- a rebuild: the full list's build, its image vectors (what the full-list path makes once
  per list), the half derived from it (what the half-list path makes instead), and
  nvalchemiops' own half build (``half_fill=True``) for comparison;
- one thread against a launch split over two (the calling thread runs the first
  share, a pool thread the second), with each share's wall and CPU time and how
  long after the first the second starts: the split is balanced when the shares'
  CPU times are equal, and costs nothing when they add up to the one-thread time.

``--nve-steps S`` times whole NVE steps instead (bench_lammps's engine), the half and the
full list alternated in one process, S steps a run, on one thread and on two.

Run:  python benchmarks/bench_pair_kernel.py [--workloads 108x8,108x32,4000x1] [--repeats 15]
      [--nve-steps 300]
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
from bench_lammps import EPSILON, RC, SIGMA, SKIN, ours_engine, ours_seconds, workload
from common import machine

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.models.pair_kernel import pair_sums
from nvalchemi_ase.neighbors._backend import cell_list_workspace, ops_batch_cell_list
from nvalchemi_ase.neighbors.half import half_list
from nvalchemi_ase.neighbors.images import image_vectors
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
    arguments = (model.kernel_terms, parameters, batch.positions)
    made_once = functools.partial(pair_sums, *arguments, neighbors, model.cutoff, False, False)
    made_per_visit = functools.partial(pair_sums, *arguments, in_kernel, model.cutoff, False, False)
    half = functools.partial(pair_sums, *arguments, neighbors, model.cutoff, False, True)
    for threads in (1, 2):  # compiled, loaded and recorded before any timing
        torch.set_num_threads(threads)
        made_once(), made_per_visit(), half()
    _compare_lists(name, visits, made_once, half, calls, repeats)
    _rebuilds(model, batch, neighbors, repeats)
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


def _compare_lists(
    name: str, visits: int, full: Callable[[], Any], half: Callable[[], Any], calls: int, repeats: int
) -> None:
    """Full against half list, alternated, on one thread and on two (medians)."""
    print(f"\n{name}: {visits:,} visits a call on the full list, half as many on the half list")
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {"full": [], "half": []}
        for repeat in range(repeats):
            pair = [("full", full), ("half", half)]
            for key, call in pair if repeat % 2 else pair[::-1]:
                times[key].append(_seconds(call, calls))
        one, two = statistics.median(times["full"]), statistics.median(times["half"])
        print(
            f"  {threads} thread{'s' if threads > 1 else ' '}: full list {one * 1e3:7.3f} ms, "
            f"half list {two * 1e3:7.3f} ms ({one / two:.2f}x faster)"
        )


def _rebuilds(model: LennardJones, batch: Batch, neighbors: Any, repeats: int) -> None:
    """A rebuild of every system (one thread): the full list, the half derived from it, half_fill."""
    torch.set_num_threads(1)
    lists = model.neighbor_list
    every = torch.ones(batch.num_graphs, dtype=torch.bool)
    raw = (neighbors.raw_matrix, neighbors.raw_shifts, neighbors.raw_counts)
    matrix, shifts, counts = (tensor.clone() for tensor in raw)
    workspace = cell_list_workspace(batch.cell, batch.pbc, lists.search_radius, batch.positions.shape[0])

    def half_filled() -> None:
        ops_batch_cell_list()(
            batch.positions,
            lists.search_radius,
            cell=batch.cell,
            pbc=batch.pbc,
            batch_idx=lists._batch_idx32,
            batch_ptr=lists._ptr32,
            neighbor_matrix=matrix,
            neighbor_matrix_shifts=shifts,
            num_neighbors=counts,
            half_fill=True,
            **workspace,
        )

    calls = {
        "full list built": functools.partial(lists._build, batch, every),
        "its image vectors": functools.partial(
            image_vectors, neighbors.raw_shifts, neighbors.raw_counts, batch.cell, batch.batch_idx
        ),
        "half derived from it": functools.partial(half_list, *raw, batch.cell, batch.batch_idx),
        "half_fill=True build": half_filled,
    }
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(repeats):
        for key, call in calls.items():
            times[key].append(_seconds(call, 3))
    print(
        "  a rebuild, one thread: "
        + ", ".join(f"{k} {statistics.median(v) * 1e3:.2f} ms" for k, v in times.items())
    )


def _nve_steps(name: str, steps: int, repeats: int) -> None:
    """Whole NVE steps over the half list against the full list, alternated (medians, ms a step)."""
    systems = workload(name)
    engines = {"half": ours_engine(systems, half=True), "full": ours_engine(systems, half=False)}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times: dict[str, list[float]] = {key: [] for key in engines}
        for repeat in range(repeats):
            order = list(engines) if repeat % 2 else list(engines)[::-1]
            for key in order:
                engine, batch = engines[key]
                times[key].append(ours_seconds(engine, batch, steps, half=key == "half") / steps)
        full, half = statistics.median(times["full"]), statistics.median(times["half"])
        print(
            f"{name}, {threads} thread{'s' if threads > 1 else ' '}: a step {full * 1e3:.3f} ms on the full "
            f"list, {half * 1e3:.3f} ms on the half list ({full / half:.2f}x)",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", default="108x8,108x32,4000x1")
    parser.add_argument("--repeats", type=int, default=15, help="alternated repeats; medians are printed")
    parser.add_argument("--nve-steps", type=int, default=0, help="time whole NVE steps instead")
    args = parser.parse_args()
    print(f"machine: {machine()}; float64, energies and forces")
    saved = torch.get_num_threads()
    try:
        for name in args.workloads.split(","):
            if args.nve_steps:
                _nve_steps(name, args.nve_steps, args.repeats)
            else:
                _measure(name, args.repeats)
    finally:
        torch.set_num_threads(saved)


if __name__ == "__main__":
    main()
