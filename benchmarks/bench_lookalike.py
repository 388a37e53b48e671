"""The ASE-style script of the look-alike issue, measured in one run, printed as a ratio.

64 Ar systems of 108 atoms, ``Langevin`` at 300 K (friction 0.01/fs, dt 2 fs)
with a trajectory every 100 steps and an ``MDLogger``-style log: ASE's classes
system by system against ours on the whole list (one import changed,
``BatchedCalculator(LennardJones(...))`` as the calculator). ASE is timed on a
few systems for fewer steps and compared per system-step (it runs each system
alone, so its cost is linear in both); the output says so.

Run:  python benchmarks/bench_lookalike.py [--systems 64] [--steps 1000] [--device cpu|cuda] [--torch-rng]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ase import units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.langevin import Langevin as AseLangevin
from common import machine

from nvalchemi_ase import BatchedCalculator, LennardJones
from nvalchemi_ase.md.langevin import Langevin

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def systems(count: int) -> list:
    made = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(3)  # 108 atoms
        atoms.rattle(0.05, seed=k)
        made.append(atoms)
    return made


def ours(atoms_list, steps, folder: Path, device, torch_rng: bool) -> float:
    calc = BatchedCalculator(LennardJones(**ARGON), device=device)
    for atoms in atoms_list:
        atoms.calc = calc
    rng = (
        torch.Generator(device=calc.device).manual_seed(0)
        if torch_rng
        else [np.random.default_rng(k) for k in range(len(atoms_list))]
    )
    start = time.perf_counter()
    with Langevin(
        atoms_list,
        2 * units.fs,
        temperature_K=300,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=rng,
        trajectory=str(folder / "ours_{}.traj"),
        logfile=str(folder / "ours.log"),
        loginterval=100,
    ) as dyn:
        dyn.run(steps)
    if calc.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def ase_per_system_step(atoms_list, steps, folder: Path) -> float:
    start = time.perf_counter()
    for k, atoms in enumerate(atoms_list):
        atoms = atoms.copy()
        atoms.calc = AseLennardJones(**ARGON)
        with AseLangevin(
            atoms,
            2 * units.fs,
            temperature_K=300,
            friction=0.01 / units.fs,
            fixcm=False,
            rng=np.random.default_rng(k),
            trajectory=str(folder / f"ase_{k}.traj"),
            logfile=str(folder / f"ase_{k}.log"),
            loginterval=100,
        ) as dyn:
            dyn.run(steps)
    return (time.perf_counter() - start) / (len(atoms_list) * steps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--systems", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--torch-rng", action="store_true", help="draw noise on the device (not ASE's numbers)"
    )
    args = parser.parse_args()
    print(f"machine: {machine()}; device {args.device}")
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        warm = systems(2)
        ours(warm, 3, folder, args.device, args.torch_rng)  # load kernels once
        seconds = ours(systems(args.systems), args.steps, folder, args.device, args.torch_rng)
        reference = ase_per_system_step(systems(2), 100, folder)
    per_step = seconds / (args.systems * args.steps)
    rng = "torch generator on the device" if args.torch_rng else "one numpy generator per system, as ASE"
    print(
        f"Langevin, {args.systems} x 108 Ar, {args.steps} steps, trajectory and log every 100 ({rng}): "
        f"ours {seconds:.1f} s ({per_step * 1e3:.3f} ms per system-step); "
        f"ASE {reference * 1e3:.2f} ms per system-step (2 systems x 100 steps) -> {reference / per_step:.1f}x"
    )


if __name__ == "__main__":
    main()
