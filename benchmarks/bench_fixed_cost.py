"""A step's fixed cost: one NVE step of small LJ argon batches against the pair kernel alone.

Workload: fcc argon (a 5.26 Å) rattled by 0.05 Å, B cells of 108 atoms, LJ σ 3.4 Å,
ε 0.0104 eV, rc 8.5 Å (shifted), skin 1.02 Å, float64, dt 2 fs, no hooks. For each B
the step (``engine.run`` over many steps, the skin rebuilds included) and the pair
kernel alone (the same atoms, the same list) are timed in alternation; the fixed
cost is their difference: what a step costs besides the pair sums. Then, for B=1,
the recorded warp launches re-packed per step (at B=1 and 32), the torch operations
per step (torch profiler) and the Python functions that take the time (cProfile, by own time).

Run:  python benchmarks/bench_fixed_cost.py [--systems 1,8,64] [--steps 2000] [--repeats 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch
from ase.build import bulk
from common import machine

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models.pair_kernel import pair_sums


def engine_and_batch(count: int) -> tuple[NVE, Batch, LennardJones]:
    systems = []
    for seed in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)
        atoms.rattle(0.05, seed=seed)
        atoms.set_velocities(np.random.default_rng(seed).normal(scale=0.005, size=(len(atoms), 3)))
        systems.append(atoms)
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, skin=1.02)
    batch = Batch.from_atoms(systems, device="cpu", dtype=torch.float64)
    engine = NVE(model, dt=2.0)
    engine.run(batch, n_steps=20)  # kernels loaded, lists built
    return engine, batch, model


def repacked_per_step(count: int, steps: int = 200) -> float:
    """Arguments re-packed into a recorded warp launch per step (0 when every launch finds its own)."""
    from warp._src.context import Launch

    engine, batch, _ = engine_and_batch(count)
    original = Launch.set_param_at_index
    calls = 0

    def counted(self: Launch, *args: object, **kwargs: object) -> None:
        nonlocal calls
        calls += 1
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    Launch.set_param_at_index = counted  # type: ignore[method-assign]
    try:
        engine.run(batch, n_steps=steps)
    finally:
        Launch.set_param_at_index = original  # type: ignore[method-assign]
    return calls / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default="1,8,64")
    parser.add_argument("--steps", type=int, default=2000, help="steps per timing at B=1 (fewer at larger B)")
    parser.add_argument("--repeats", type=int, default=5, help="alternating repeats; medians are printed")
    parser.add_argument("--profile", action="store_true", help="torch profiler and cProfile of B=1")
    args = parser.parse_args()
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; float64")
    header = f"{'step ms':>10}{'pair kernel ms':>16}{'fixed ms':>10}{'fixed/step':>12}{'cores':>7}"
    print(f"\n{'B x 108 atoms':<14}{header}")
    for count in (int(part) for part in args.systems.split(",")):
        engine, batch, model = engine_and_batch(count)
        steps = max(20, args.steps // count)
        step_times, kernel_times, cores = [], [], []
        for _ in range(args.repeats):
            start, cpu = time.perf_counter(), time.process_time()
            engine.run(batch, n_steps=steps)
            wall = time.perf_counter() - start
            step_times.append(wall / steps)
            cores.append((time.process_time() - cpu) / wall)
            neighbors = model.neighbor_list.update(batch)
            parameters = model._parameters_on(batch.device)
            energy = torch.empty(batch.num_graphs, dtype=torch.float64)
            start = time.perf_counter()
            for _ in range(steps):  # what a step asks of the kernel: forces and the systems' energies
                pair_sums(
                    model.kernel_terms,
                    parameters,
                    batch.positions,
                    neighbors,
                    model.cutoff,
                    False,
                    atom_energies=False,
                    system_energies=energy,
                )
            kernel_times.append((time.perf_counter() - start) / steps)
        step, kernel = statistics.median(step_times) * 1e3, statistics.median(kernel_times) * 1e3
        print(
            f"{count:<14}{step:>10.4f}{kernel:>16.4f}{step - kernel:>10.4f}"
            f"{(step - kernel) / step:>12.2f}{statistics.median(cores):>7.2f}"
        )
    if not args.profile:
        return
    for count in (1, 32):
        print(f"B={count}: {repacked_per_step(count):.2f} recorded launches re-packed per step")
    engine, batch, _ = engine_and_batch(1)
    with torch.profiler.profile() as profiler:
        engine.run(batch, n_steps=100)
    calls = sum(event.count for event in profiler.key_averages() if not event.key.startswith("detach"))
    print(f"\nB=1: {calls / 100:.1f} torch operations per step (torch profiler, 100 steps)")
    print(profiler.key_averages().table(sort_by="count", row_limit=15))
    profile = cProfile.Profile()
    profile.enable()
    engine.run(batch, n_steps=args.steps)
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
