"""Stage-loop benchmarks, measured in one run and printed as ratios.

1. NVE of 64 Ar systems x 108 atoms (smooth LJ, rc 8.5 Å, dt 2 fs): our batched
   engine against ASE's VelocityVerlet run system by system. ASE is timed on a
   few systems for a few steps and compared per system-step (ASE's cost is
   linear in both: it runs each system alone).
2. Hook overhead: the same run with NaN check + force clamp + CSV logging every
   100 steps + snapshots every 100 steps, against bare stepping. The two runs
   alternate (``--repeats`` pairs, each pair in the other order than the last);
   the ratio of the medians and the median of the pairs' ratios are printed, and
   on CPU the same in process CPU time (less sensitive to other load on a shared
   machine). Then the same two engines step by step in turn (a sturdier figure on a
   busy machine), and each hook's own cost per firing and per step.

Run:  python benchmarks/bench_dynamics.py [--device cpu|cuda] [--steps 200] [--dtype float64] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from common import ase_verlet_per_system_step, machine, time_nve

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import NVE, HostMemory
from nvalchemi_ase.dynamics.hooks import LoggingHook, MaxForceClampHook, NaNDetectorHook, SnapshotHook
from nvalchemi_ase.hooks import HookContext
from nvalchemi_ase.hooks.protocol import hook_stages

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def argon_systems(count: int) -> list:
    rng = np.random.default_rng(0)
    systems = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)  # 108 atoms
        atoms.rattle(0.05, seed=k)
        atoms.set_velocities(rng.normal(scale=0.01, size=(len(atoms), 3)))
        systems.append(atoms)
    return systems


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--systems", type=int, default=64)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    systems = argon_systems(args.systems)
    print(f"machine: {machine()}; device {args.device}, {args.dtype}")

    bare = time_nve(LennardJones(**ARGON), systems, args.steps, args.device, dtype)
    per_step = bare / (args.systems * args.steps)
    reference = ase_verlet_per_system_step(systems[:4], lambda: AseLennardJones(**ARGON), 10)
    atom_steps = args.systems * 108 * args.steps / bare
    print(
        f"NVE {args.systems} x 108 Ar, {args.steps} steps: ours {bare:.2f} s "
        f"({per_step * 1e3:.3f} ms per system-step, {atom_steps:.3g} atom-steps/s); "
        f"ASE VelocityVerlet {reference * 1e3:.2f} ms per system-step "
        f"(4 systems x 10 steps) -> {reference / per_step:.1f}x"
    )

    with tempfile.TemporaryDirectory() as folder:
        hook_overhead(systems, args, dtype, Path(folder))


def _hooks(systems: list, steps: int, repeats: int, folder: Path) -> list:
    # snapshots of the whole runs and of as many steps taken one by one, with room for the warm-ups
    sink = HostMemory(capacity=len(systems) * (steps // 100 + 2) * (2 * repeats + 2))
    return [
        MaxForceClampHook(max_force=50.0),
        NaNDetectorHook(),
        LoggingHook(frequency=100, backend="csv", log_path=str(folder / "log.csv")),
        SnapshotHook(sink=sink, frequency=100),
    ]


def hook_overhead(systems: list, args: argparse.Namespace, dtype: torch.dtype, folder: Path) -> None:
    """Bare and hooked NVE, alternating; then each hook's own cost per firing."""
    hooks = _hooks(systems, args.steps, args.repeats, folder)
    engines = {}
    for name, chosen in (("bare", []), ("hooked", hooks)):
        batch = Batch.from_atoms(systems, device=args.device, dtype=dtype)
        engine = NVE(LennardJones(**ARGON), dt=2.0, hooks=chosen)
        engine.run(batch, n_steps=2)  # prime forces, build lists, load kernels
        engines[name] = (engine, batch)
    wall: dict[str, list[float]] = {"bare": [], "hooked": []}
    cpu: dict[str, list[float]] = {"bare": [], "hooked": []}
    for repeat in range(args.repeats):
        # Alternate which run goes first: whatever the second run of a pair pays or gains (a warmer
        # cache, the machine's other load arriving) falls on each side equally often.
        order = ("bare", "hooked") if repeat % 2 == 0 else ("hooked", "bare")
        for name in order:
            engine, batch = engines[name]
            _sync(args.device)
            start_cpu, start = time.process_time(), time.perf_counter()
            engine.run(batch, n_steps=args.steps)
            _sync(args.device)
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    bare, hooked = statistics.median(wall["bare"]), statistics.median(wall["hooked"])
    print(
        f"with NaN + clamp + logging/100 + snapshots/100 ({args.repeats} interleaved pairs): "
        f"medians {hooked:.2f} s vs bare {bare:.2f} s -> overhead {100 * (hooked / bare - 1):.1f}%; "
        f"median of the pairs' ratios {_pair_overhead(wall):+.1f}%"
    )
    if args.device == "cpu":
        total = 100 * (sum(cpu["hooked"]) / sum(cpu["bare"]) - 1)
        pairs = _pair_overhead(cpu)
        print(f"  process CPU time: overhead {total:.1f}% in total, {pairs:+.1f}% median of pair ratios")
    steps = _interleaved_steps(engines, args.steps * args.repeats, args.device)
    blocks = {name: _block_sums(times, 100) for name, times in steps.items()}
    print(
        f"  step by step, the two engines in turn ({args.steps * args.repeats} steps each): overhead "
        f"{100 * (sum(steps['hooked']) / sum(steps['bare']) - 1):+.1f}% in total, "
        f"{_pair_overhead(blocks):+.1f}% median of {len(blocks['bare'])} blocks of 100 steps"
    )
    # Each hook's own cost against a bare step: on CPU in CPU time (the hooks run on this thread and
    # never wait), which other load on a shared machine barely moves; on CUDA in wall time.
    on_cpu = args.device == "cpu"
    clock = time.thread_time if on_cpu else time.perf_counter
    step_s = (statistics.median(cpu["bare"]) if on_cpu else bare) / args.steps
    engine, batch = engines["hooked"]
    total = 0.0
    for hook in _hooks(systems, args.steps, 200, folder):
        stage = hook_stages(hook)[0]
        ctx = HookContext(batch, engine, 0, stage)
        firings = 200
        with contextlib.ExitStack() as stack:
            if hasattr(hook, "__enter__"):
                stack.enter_context(hook)
            hook(ctx, stage)
            _sync(args.device)
            start = clock()
            for _ in range(firings):
                batch.forces = batch.forces  # the clamp replaces forces: same input each firing
                hook(ctx, stage)
            _sync(args.device)
            per_firing = (clock() - start) / firings
        per_step = per_firing / hook.frequency
        total += per_step
        print(
            f"  {type(hook).__name__}: {per_firing * 1e6:.0f} us per firing, every {hook.frequency} step(s): "
            f"{100 * per_step / step_s:.2f}% of a bare step"
        )
    what = "CPU time" if on_cpu else "wall time"
    print(f"  the four hooks' own cost: {100 * total / step_s:.2f}% of a bare step ({what})")


def _interleaved_steps(engines: dict, steps: int, device: str) -> dict[str, list[float]]:
    """Wall seconds of each step of each engine, the engines stepping in turn (the order swapped every
    step): a burst of other load on the machine falls on both sides within milliseconds."""
    times: dict[str, list[float]] = {name: [] for name in engines}
    names = list(engines)
    with contextlib.ExitStack() as stack:
        for engine, batch in engines.values():
            stack.enter_context(engine.opened_hooks())
            engine.prime(batch)
        for step in range(steps):
            for name in names if step % 2 == 0 else reversed(names):
                engine, batch = engines[name]
                start = time.perf_counter()
                engine.step(batch)
                _sync(device)
                times[name].append(time.perf_counter() - start)
    return times


def _block_sums(times: list[float], size: int) -> list[float]:
    """Sums of consecutive ``size`` values (each block holds one firing of the hooks every 100 steps)."""
    return [sum(times[start : start + size]) for start in range(0, len(times) - size + 1, size)]


def _pair_overhead(times: dict[str, list[float]]) -> float:
    """The median over repeats of hooked/bare - 1, in percent (each pair ran back to back)."""
    return 100 * (statistics.median(h / b for h, b in zip(times["hooked"], times["bare"], strict=True)) - 1)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


if __name__ == "__main__":
    main()
