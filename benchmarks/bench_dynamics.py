"""Stage-loop benchmarks, measured in one run and printed as ratios.

1. NVE of 64 Ar systems x 108 atoms (smooth LJ, rc 8.5 Å, dt 2 fs): our batched
   engine against ASE's VelocityVerlet run system by system. ASE is timed on a
   few systems for a few steps and compared per system-step (ASE's cost is
   linear in both: it runs each system alone).
2. Hook overhead: the same run with NaN check + force clamp + CSV logging every
   100 steps + snapshots every 100 steps, against bare stepping.

Run:  python benchmarks/bench_dynamics.py [--device cpu|cuda] [--steps 200] [--dtype float64]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from common import ase_verlet_per_system_step, machine, time_nve

from nvalchemi_ase import LennardJones
from nvalchemi_ase.dynamics import HostMemory
from nvalchemi_ase.dynamics.hooks import LoggingHook, MaxForceClampHook, NaNDetectorHook, SnapshotHook

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
        sink = HostMemory(capacity=args.systems * (args.steps // 100 + 2))
        hooks = [
            MaxForceClampHook(max_force=50.0),
            NaNDetectorHook(),
            LoggingHook(frequency=100, backend="csv", log_path=str(Path(folder) / "log.csv")),
            SnapshotHook(sink=sink, frequency=100),
        ]
        hooked = time_nve(LennardJones(**ARGON), systems, args.steps, args.device, dtype, hooks)
    print(
        f"with NaN + clamp + logging/100 + snapshots/100: {hooked:.2f} s vs bare {bare:.2f} s -> "
        f"overhead {100 * (hooked / bare - 1):.1f}%"
    )


if __name__ == "__main__":
    main()
