"""Dask scale-out: the same EMT relaxation screen on a local cluster of 1 worker and of 2, as a ratio.

Both clusters are started (and each worker's model and kernels warmed) before
timing; the two are then timed in turns, ``--repeats`` times each, so load on
the machine hits both alike. Each worker runs torch on one thread, so N
workers use N cores. On a 2-core CPU expect about 1.6x for 2 workers.

Where the time goes is printed beside each median: the workers' compute (the sum
of the chunks' own seconds, spread over the workers), and the CPU seconds of this
process, which holds the client and, for a local cluster, the scheduler: it
shares the cores with the workers.

Run:  python benchmarks/bench_distributed.py [--structures 128] [--chunk-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time

from ase.build import bulk
from common import machine
from distributed import Client

from nvalchemi_ase.distributed import ChunkPlan, ModelSpec, local_cluster, run_pipeline
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook

MODEL = ModelSpec("nvalchemi_ase.models:EMT")


def structures(count: int) -> list:
    """Copper cells of 16 and 32 atoms, rattled by different amounts: they relax in different times."""
    made = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1 + k % 2))
        atoms.rattle(0.02 + 0.08 * ((k * 37) % 11) / 10, seed=k)
        made.append(atoms)
    return made


def relax(model):
    return FIRE(model, n_steps=150, convergence_hook=ConvergenceHook.from_fmax(0.02))


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=128)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--max-systems", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    screen = structures(args.structures)
    plan = ChunkPlan(build=relax, max_systems=args.max_systems, device="cpu", threads=1)
    times: dict[int, list[float]] = {1: [], 2: []}
    compute: dict[int, list[float]] = {1: [], 2: []}
    client_cpu: dict[int, list[float]] = {1: [], 2: []}
    with (
        local_cluster(1) as cluster_1,
        local_cluster(2) as cluster_2,
        Client(cluster_1) as client_1,
        Client(cluster_2) as client_2,
    ):
        clients = {1: client_1, 2: client_2}
        for client in clients.values():  # warm every worker: model, kernels, imports
            run_pipeline(client, screen[:4], MODEL, plan, chunk_size=1)
        for _ in range(args.repeats):
            for n, client in clients.items():
                chunks: list = []
                cpu = _cpu_seconds()
                start = time.perf_counter()
                final = run_pipeline(client, screen, MODEL, plan, args.chunk_size, on_chunk=chunks.append)
                times[n].append(time.perf_counter() - start)
                client_cpu[n].append(_cpu_seconds() - cpu)
                compute[n].append(sum(chunk.seconds for chunk in chunks) / n)
                assert len(final) == len(screen)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"{machine()}")
    print(f"{args.structures} EMT relaxations, chunks of {args.chunk_size}, {args.repeats} repeats in turns")
    for n, label in ((1, "1 worker "), (2, "2 workers")):
        print(
            f"{label}: median {statistics.median(times[n]):.2f} s  {[round(t, 2) for t in times[n]]}  "
            f"compute per worker {statistics.median(compute[n]):.2f} s, "
            f"client+scheduler CPU {statistics.median(client_cpu[n]):.2f} s"
        )
    print(f"speed-up of 2 workers over 1: {one / two:.2f}x")
    return one / two


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
