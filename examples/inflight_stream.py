"""Stream a long sequence of structures through relax-then-MD, a few at a time (inflight batching).

Finished structures are written to one ASE trajectory each and come back in
input order; the device never holds more than ``--slots`` systems.

Run:  python examples/inflight_stream.py [--structures 100] [--slots 16] [--output stream_out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from ase.build import bulk

from nvalchemi_ase import LennardJones
from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, InflightSampler, TrajectorySink


def structures(count: int):
    """A lazy stream: nothing is built before the sampler asks for it."""
    rng = np.random.default_rng(0)
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((1 + k % 2, 1, 1))
        atoms.rattle(0.02 + 0.2 * rng.random(), seed=k)
        yield atoms


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structures", type=int, default=100)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--output", default="stream_out")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)
    pipeline = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.02), n_steps=300) + NVE(
        model, dt=2.0, n_steps=20, initial_temperature=30.0, velocity_seed=1
    )
    sampler = InflightSampler(structures(args.structures), max_systems=args.slots, device=args.device)
    with TrajectorySink(Path(args.output)) as finished:
        results = pipeline.run_inflight(sampler, sinks=[finished])
    print(f"{len(results)} structures done in {pipeline.step_count} fused steps, {args.slots} at a time")
    print(f"final frames: {len(finished.paths())} files in {args.output}/")
    print(f"open one with:  ase gui {finished.paths()[0]}")
    return results


if __name__ == "__main__":
    main()
