"""Relax-then-MD over structures of mixed difficulty, measured in one run and printed as ratios.

1. fused (FIRE + NVE in one loop) with inflight batching (a fixed number of
   systems on the device, refilled as they finish);
2. the same engines one after the other: FIRE for all, then NVE for all (all
   structures in one batch: a device that holds them all);
   and, with the fused run's device budget, chunk after chunk of ``--slots``
   structures: FIRE for the chunk, then NVE for it;
3. ASE's FIRE then VelocityVerlet, system by system (timed on a subset and
   scaled per system, since ASE runs each system alone);
4. the room the stream leaves a pipeline: each structure's FIRE steps (untimed), the
   steps of an ideal pipeline (refills instant and free) against the chunks', and the
   cost of a fused step against a chunk's. A pipeline saves steps only where
   relaxations differ widely; ``--rattle 0.7`` makes a wider mix, and ``--hard-every 8`` a
   stream with a tail: every 8th structure rattled 1 Å, which FIRE takes 3 to 4 times as
   long to relax, as a few hard structures among many easy ones do.

The fused and sequential runs alternate (``--repeats`` pairs, same process),
so each ratio compares runs made under the same machine load.

Run:  python benchmarks/bench_fused.py [--device cpu|cuda] [--structures 512] [--slots 64] [--md-steps 100]
      [--repeats 2] [--rattle 0.4] [--hard-every 0]
"""

from __future__ import annotations

import argparse
import heapq
import time

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.verlet import VelocityVerlet
from ase.optimize import FIRE as AseFIRE
from common import machine

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, InflightSampler

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
FMAX = 0.01


HARD_RATTLE = 1.0
"""Å: FIRE takes 135 to 203 steps on the cells of the stream rattled this much."""


def structures(count: int, largest_rattle: float = 0.4, hard_every: int = 0) -> list:
    """32-atom argon cells rattled from 0.02 to ``largest_rattle`` Å. At 0.4 (the default) FIRE relaxes
    them in 13 to 59 steps; at 0.7 in about 20 to 110, all back to the fcc minimum. With ``hard_every``
    N, every Nth cell is rattled :data:`HARD_RATTLE` instead: a tail of slow relaxations."""
    rng = np.random.default_rng(0)
    made = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
        rattle = 0.02 + (largest_rattle - 0.02) * rng.random()
        hard = hard_every > 0 and k % hard_every == hard_every - 1
        atoms.rattle(HARD_RATTLE if hard else rattle, seed=k)
        made.append(atoms)
    return made


def relax_steps(systems, device, relax_budget) -> np.ndarray:
    """FIRE steps each system takes to converge (all in one batch, read on the host each step: untimed)."""
    relax = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(FMAX))
    steps = np.full(len(systems), relax_budget)
    with relax.opened_hooks():
        batch = relax.prime(Batch.from_atoms(systems, device=device))
        for step in range(1, relax_budget + 1):
            relax.step(batch)
            converged = relax.converged.cpu().numpy()
            steps[converged & (steps == relax_budget)] = step
            if converged.all():
                break
    return steps


def pipeline_room(relaxing: np.ndarray, md_steps: int, slots: int) -> tuple[int, int]:
    """Steps of an ideal pipeline of ``slots`` and of chunks of ``slots``, for systems whose FIRE takes
    ``relaxing`` steps. In the pipeline each system takes its FIRE and MD steps and one step that
    computes its forces, in the slot that frees first, refilled at once and for free; a chunk takes
    its slowest system's FIRE steps, then the MD steps."""
    free = [0] * slots
    for steps in relaxing:  # in stream order
        heapq.heapreplace(free, free[0] + int(steps) + md_steps + 1)
    starts = range(0, relaxing.size, slots)
    chunks = sum(int(relaxing[first : first + slots].max()) + md_steps for first in starts)
    return max(free), chunks


def timed(function) -> float:
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def fused_inflight(systems, device, slots, md_steps, relax_budget) -> tuple[float, int]:
    model = LennardJones(**ARGON)
    pipeline = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(FMAX), n_steps=relax_budget) + NVE(
        model, dt=2.0, n_steps=md_steps
    )
    sampler = InflightSampler(systems, max_systems=slots, device=device)
    seconds = timed(lambda: pipeline.run_inflight(sampler))
    return seconds, pipeline.step_count


def one_after_the_other(systems, device, md_steps, relax_budget) -> tuple[float, int]:
    """The same structures in, the same ``Atoms`` with results out, as :func:`fused_inflight`: the
    timing includes building the batch and ``to_atoms`` (~40 ms of ~2 s for 512 systems on a CPU)."""
    model = LennardJones(**ARGON)
    relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(FMAX))

    def run() -> list:
        batch = relax.run(Batch.from_atoms(systems, device=device), n_steps=relax_budget)
        return NVE(model, dt=2.0).run(batch, n_steps=md_steps).to_atoms()

    seconds = timed(run)
    return seconds, relax.step_count + md_steps


def in_chunks(systems, device, slots, md_steps, relax_budget) -> tuple[float, int]:
    """Relax-then-MD with the fused run's device budget: ``slots`` systems at a time, each chunk
    relaxed (until its slowest system converges) and then run through MD, chunk after chunk."""
    model = LennardJones(**ARGON)
    steps = 0

    def run() -> list:
        nonlocal steps
        done = []
        for first in range(0, len(systems), slots):
            relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(FMAX))
            batch = relax.run(Batch.from_atoms(systems[first : first + slots], device=device), relax_budget)
            done += NVE(model, dt=2.0).run(batch, n_steps=md_steps).to_atoms()
            steps += relax.step_count + md_steps
        return done

    seconds = timed(run)
    return seconds, steps


def masked_overhead(systems, device, steps: int, repeats: int = 3) -> float:
    """FIRE steps through masked updates (every system a member) over plain ones: the ratio of times.

    Each way steps its own copy of the same systems, so both follow the same trajectory and
    pay the same neighbour-list rebuilds; the order alternates between repeats."""
    runs = {}
    for way in ("plain", "masked"):
        model = LennardJones(**ARGON)
        engine = FIRE(model)
        batch = engine.run(Batch.from_atoms(systems, device=device), n_steps=0)  # bound, forces
        runs[way] = (engine, batch)
    members = torch.ones(len(systems), dtype=torch.bool, device=device)

    def plain() -> None:
        engine, batch = runs["plain"]
        for _ in range(steps):
            engine.pre_update(batch)
            engine.compute(batch)
            engine.post_update(batch)

    def masked() -> None:
        engine, batch = runs["masked"]
        for _ in range(steps):
            engine.masked_pre_update(batch, members)
            engine.compute(batch)
            engine.masked_post_update(batch, members)

    spent = {plain: 0.0, masked: 0.0}
    for repeat in range(repeats):  # interleaved, in alternating order
        for way in (plain, masked) if repeat % 2 == 0 else (masked, plain):
            spent[way] += timed(way)
    return spent[masked] / spent[plain]


def ase_per_system(systems, md_steps, relax_budget) -> float:
    def run() -> None:
        for atoms in systems:
            atoms = atoms.copy()
            atoms.calc = AseLennardJones(**ARGON)
            AseFIRE(atoms, logfile=None).run(fmax=FMAX, steps=relax_budget)
            VelocityVerlet(atoms, 2.0 * units.fs).run(md_steps)

    return timed(run) / len(systems)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--structures", type=int, default=512)
    parser.add_argument("--slots", type=int, default=64)
    parser.add_argument("--md-steps", type=int, default=100)
    parser.add_argument("--relax-budget", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rattle", type=float, default=0.4, help="largest rattle, Å (0.7: a wider mix)")
    parser.add_argument(
        "--hard-every", type=int, default=0, help=f"every Nth structure rattled {HARD_RATTLE} Å (0: none)"
    )
    args = parser.parse_args()
    systems = structures(args.structures, args.rattle, args.hard_every)
    hard = f", every {args.hard_every}th {HARD_RATTLE} Å" if args.hard_every else ""
    print(
        f"machine: {machine()}; device {args.device}; {args.structures} x 32 Ar rattled up to "
        f"{args.rattle} Å{hard}, FIRE to fmax {FMAX} then {args.md_steps} NVE steps"
    )

    fused_inflight(systems[:2], args.device, 2, 2, 5)  # load kernels once
    one_after_the_other(systems[:2], args.device, 2, 5)
    fused_times, serial_times, chunk_times = [], [], []
    for _ in range(args.repeats):  # interleaved: each triple under the same load
        budget = args.relax_budget
        fused_s, fused_steps = fused_inflight(systems, args.device, args.slots, args.md_steps, budget)
        serial_s, serial_steps = one_after_the_other(systems, args.device, args.md_steps, budget)
        chunk_s, chunk_steps = in_chunks(systems, args.device, args.slots, args.md_steps, budget)
        fused_times.append(fused_s)
        serial_times.append(serial_s)
        chunk_times.append(chunk_s)
    fused_s, serial_s = float(np.median(fused_times)), float(np.median(serial_times))
    ase_s = ase_per_system(systems[:4], args.md_steps, args.relax_budget) * len(systems)
    masked = masked_overhead(systems[: args.slots], args.device, steps=20)
    print(
        f"fused + inflight ({args.slots} slots): {', '.join(f'{t:.2f}' for t in fused_times)} s, "
        f"{fused_steps} fused steps"
    )
    print(
        f"FIRE for all, then NVE for all ({args.structures} at once): "
        f"{', '.join(f'{t:.2f}' for t in serial_times)} s, {serial_steps} steps"
    )
    pairs = ", ".join(f"{s / f:.2f}x" for f, s in zip(fused_times, serial_times, strict=True))
    print(f"fused vs sequential, each interleaved pair: {pairs}")
    print(
        f"FIRE then NVE, {args.slots} systems at a time (the fused run's budget): "
        f"{', '.join(f'{t:.2f}' for t in chunk_times)} s, {chunk_steps} steps; fused vs this, each: "
        + ", ".join(f"{c / f:.2f}x" for f, c in zip(fused_times, chunk_times, strict=True))
    )
    print(
        f"ASE FIRE then VelocityVerlet, system by system (4 timed, scaled to {args.structures}): "
        f"{ase_s:.2f} s"
    )
    print(f"masked FIRE steps (all {args.slots} members) over plain ones: {masked:.3f}x")
    chunk_s = float(np.median(chunk_times))
    relaxing = relax_steps(systems, args.device, args.relax_budget)
    ideal, chunked = pipeline_room(relaxing, args.md_steps, args.slots)
    print(
        f"room for inflight on this stream: FIRE takes {relaxing.min()}-{relaxing.max()} steps "
        f"(median {np.median(relaxing):.0f}); an ideal {args.slots}-slot pipeline (refills instant and "
        f"free) would take {ideal} steps against the chunks' {chunked} ({100 * (1 - ideal / chunked):.0f}% "
        f"fewer), and the fused run took {fused_steps}; a fused step cost "
        f"{1e3 * fused_s / fused_steps:.2f} ms, a chunk's {1e3 * chunk_s / chunk_steps:.2f} ms "
        "(median run time over its steps)"
    )
    print(
        f"ratios (medians): fused vs sequential {serial_s / fused_s:.2f}x; "
        f"fused vs {args.slots} at a time {chunk_s / fused_s:.2f}x; "
        f"fused vs ASE {ase_s / fused_s:.1f}x; sequential vs ASE {ase_s / serial_s:.1f}x"
    )


if __name__ == "__main__":
    main()
