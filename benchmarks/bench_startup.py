"""Start-up costs, each in a fresh process, repeated and interleaved, printed as medians and ratios.

1. ``import nvalchemi_ase`` against ``import ase`` (the baseline a user knows);
2. ``nvalchemi-ase --help`` against ``ase --help``;
3. time to the first step: a process that builds one 4-atom copper batch and
   runs one EMT step of our engine, split into importing torch, the other
   imports, the first step (neighbour kernels, warp, model) and a second step
   (the model's own work, warm); the difference of the first and second steps
   is the one-off cost, also shown relative to importing torch (a yardstick
   that moves with the machine's load).

Run:  python benchmarks/bench_startup.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent

FIRST_STEP = """
import json, time
start = time.perf_counter()
import torch
torch_imported = time.perf_counter()
from ase.build import bulk
from nvalchemi_ase import EMT, Batch
from nvalchemi_ase.dynamics import NVE
imported = time.perf_counter()
batch = Batch.from_atoms([bulk("Cu", "fcc", a=3.61, cubic=True)], device="cpu")
engine = NVE(EMT(), dt=1.0)
engine.run(batch, n_steps=1)
first = time.perf_counter()
engine.run(batch, n_steps=1)
second = time.perf_counter()
print(json.dumps({
    "import torch": torch_imported - start,
    "other imports": imported - torch_imported,
    "first step": first - imported,
    "second step": second - first,
}))
"""


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    python = sys.executable
    pairs = {
        "import": ([python, "-c", "import nvalchemi_ase"], [python, "-c", "import ase"]),
        "--help": ([str(BIN / "nvalchemi-ase"), "--help"], [str(BIN / "ase"), "--help"]),
    }
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in pairs}
    phases: dict[str, list[float]] = {}
    wall([python, "-c", FIRST_STEP])  # warm the caches (warp's kernel cache, the page cache)
    for _ in range(args.repeats):  # interleaved: the machine's load hits both sides alike
        for name, (ours, theirs) in pairs.items():
            times[name][0].append(wall(ours))
            times[name][1].append(wall(theirs))
        done = subprocess.run([python, "-c", FIRST_STEP], check=True, capture_output=True, text=True)
        for phase, seconds in json.loads(done.stdout.strip().splitlines()[-1]).items():
            phases.setdefault(phase, []).append(seconds)
    print(f"medians of {args.repeats} fresh processes each (wall time, s)")
    for name, (ours, theirs) in times.items():
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"  {name:<8} nvalchemi-ase {a:6.3f}   ase {b:6.3f}   ratio {a / b:5.2f}")
    med = {phase: statistics.median(values) for phase, values in phases.items()}
    print("  time to first step (4 Cu atoms, EMT, one NVE step):")
    for phase, seconds in med.items():
        print(f"    {phase:<14} {seconds:6.3f}")
    extra = med["first step"] - med["second step"]
    print(f"    one-off cost of the first step beyond a warm step: {extra:.3f}")
    print(f"    ... relative to importing torch alone: {extra / med['import torch']:.2f}")


if __name__ == "__main__":
    main()
