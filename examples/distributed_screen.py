"""Relax a screen of structures on a local Dask cluster; results stream back as chunks finish.

Each worker process builds the EMT model once and runs inflight batching on
the chunks it is given; the client keeps the results (and would write the
outputs). Needs the extra: pip install 'nvalchemi-ase[distributed]'.

Run:  python examples/distributed_screen.py [--structures 64] [--workers 2] [--chunk-size 8]
"""

from __future__ import annotations

import argparse

from ase.build import bulk
from distributed import Client, LocalCluster

from nvalchemi_ase.distributed import ChunkPlan, ModelSpec, iter_pipeline, local_cluster
from nvalchemi_ase.dynamics import FIRE


def structures(count: int):
    """Copper cells of two sizes, rattled: they relax in different numbers of steps."""
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1 + k % 2))
        atoms.rattle(0.03 + 0.002 * k, seed=k)
        yield atoms


def relax(model):
    """What each worker runs on its chunks (a module-level function: Dask pickles it by name)."""
    return FIRE(model, n_steps=200)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=8)
    parser.add_argument("--processes", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    plan = ChunkPlan(build=relax, max_systems=16, device=args.device, threads=1)
    energies = {}
    # worker processes: local_cluster keeps its workers through a death (Dask's own LocalCluster can
    # close a dying worker's restart for good); threads of this process with --no-processes
    cluster = (
        local_cluster(args.workers)
        if args.processes
        else LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=False, dashboard_address=":0"
        )
    )
    with cluster as started, Client(started) as client:
        chunks = iter_pipeline(
            client, structures(args.structures), ModelSpec("nvalchemi_ase.models:EMT"), plan, args.chunk_size
        )
        for chunk in chunks:
            for index, atoms in zip(chunk.indices, chunk.final, strict=True):
                energies[index] = atoms.get_potential_energy()
            print(f"{len(chunk.indices)} from {chunk.worker}: {len(energies)}/{args.structures} done")
    lowest = min(energies, key=energies.__getitem__)
    print(f"lowest energy: structure {lowest}, {energies[lowest]:.4f} eV")
    return energies


if __name__ == "__main__":
    main()
