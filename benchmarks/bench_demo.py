"""The demo's job, start-up included: ``nvalchemi-ase demo`` against the same job in plain ASE.

Both run as fresh processes, interleaved, on the demo's 32 rattled copper
structures (4 to 108 atoms): EMT, FIRE to fmax 0.05 eV/Å (at most 500 steps),
then 200 Langevin steps at 300 K (dt 2 fs, friction 0.01/fs, Maxwell-Boltzmann
start), a trajectory frame every 10 steps. ASE runs one structure after the
other with ``ase.calculators.emt.EMT``, ``ase.optimize.FIRE`` and
``ase.md.langevin.Langevin``, as a user of ASE would. Prints each side's median
wall time and the ratio.

Run:  python benchmarks/bench_demo.py [--repeats 2] [--structures 32] [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ASE_JOB = """
import sys
import numpy as np
from ase import units
from ase.calculators.emt import EMT
from ase.io import Trajectory
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
from ase.optimize import FIRE
from nvalchemi_ase.cli.demo import demo_structures

count, folder = int(sys.argv[1]), sys.argv[2]
for k, atoms in enumerate(demo_structures(count)):
    atoms.calc = EMT()
    trajectory = Trajectory(f"{folder}/system_{k:05d}.traj", "w", atoms)
    relax = FIRE(atoms, logfile=None)
    relax.attach(trajectory.write, interval=10)
    relax.run(fmax=0.05, steps=500)
    MaxwellBoltzmannDistribution(atoms, temperature_K=300, rng=np.random.default_rng(k))
    rng = np.random.default_rng(k)
    md = Langevin(atoms, 2 * units.fs, temperature_K=300, friction=0.01 / units.fs, rng=rng)
    md.attach(trajectory.write, interval=10)
    md.run(200)
    trajectory.close()
"""


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--structures", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    cli = str(Path(sys.executable).parent / "nvalchemi-ase")
    ours, theirs = [], []
    with tempfile.TemporaryDirectory() as folder:
        ours_command = [cli, "demo", "--structures", str(args.structures), "--device", args.device, "-q"]
        ours_command += ["-o", f"{folder}/ours"]
        theirs_command = [sys.executable, "-c", ASE_JOB, str(args.structures), folder]
        timed([*ours_command[:3], "2", *ours_command[4:]])  # warm warp's kernel cache and the page cache
        for _ in range(args.repeats):
            ours.append(timed(ours_command))
            theirs.append(timed(theirs_command))
    a, b = statistics.median(ours), statistics.median(theirs)
    print(f"demo job, {args.structures} structures, start-up included, medians of {args.repeats} (wall s)")
    print(f"  nvalchemi-ase demo ({args.device}) {a:7.2f}   {[round(t, 2) for t in ours]}")
    print(f"  plain ASE, one by one     {b:7.2f}   {[round(t, 2) for t in theirs]}")
    print(f"  ASE / ours = {b / a:.2f}x")


if __name__ == "__main__":
    main()
