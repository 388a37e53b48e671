"""An ASE script converted with one import: Langevin MD of many argon crystals at once.

The ASE version of :func:`script` reads the same, except for one line::

    from ase.md.langevin import Langevin            # ASE
    from nvalchemi_ase.md.langevin import Langevin  # batched, on the calculator's device

Everything else stays: ``timestep`` in ASE units, ``temperature_K``,
``friction`` in 1/(ASE time), ``rng``, ``trajectory=``, ``logfile=``,
``loginterval``, ``attach``, ``run``. The one new freedom: ``Langevin`` takes a
list of ``Atoms`` and advances them together, writing one trajectory and one
log per system (``md_0.traj``, ``md_1.traj``, ...). Given one generator per
system, each system follows exactly what ASE's Langevin gives it alone; main()
checks that for system 0 against ASE's own classes (ASE's Lennard-Jones
calculator and ``ase.md.langevin.Langevin``).

Run: ``python examples/ase_script_one_import.py --systems 16 --steps 300``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.io import read

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md.langevin import Langevin  # the one changed import
from nvalchemi_ase.models import LennardJones

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def crystals(count: int) -> list[Atoms]:
    """Rattled 32-atom argon crystals."""
    systems = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        systems.append(atoms)
    return systems


def script(systems: list[Atoms], steps: int, workdir: Path, device: str) -> list[list[float]]:
    """The ASE-style script: Langevin at 60 K with a trajectory, a log and an observer."""
    calc = BatchedCalculator(LennardJones(**ARGON), device=device)
    for atoms in systems:
        atoms.calc = calc
    dyn = Langevin(
        systems,
        2 * units.fs,
        temperature_K=60,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=[np.random.default_rng(seed) for seed in range(len(systems))],
        trajectory=str(workdir / "md.traj"),
        logfile=str(workdir / "md.log"),
        loginterval=10,
    )
    temperatures: list[list[float]] = []
    dyn.attach(lambda: temperatures.append([a.get_temperature() for a in systems]), interval=50)
    dyn.run(steps)
    dyn.close()
    return temperatures


def ase_reference(atoms: Atoms, steps: int) -> Atoms:
    """System 0 with ASE's own calculator and Langevin, the same generator."""
    from ase.md.langevin import Langevin as AseLangevin

    reference = atoms.copy()
    reference.calc = AseLennardJones(**ARGON)
    AseLangevin(
        reference,
        2 * units.fs,
        temperature_K=60,
        friction=0.01 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(0),
    ).run(steps)
    return reference


def main(argv: list[str] | None = None) -> float:
    """Run the script; return the largest position difference from ASE for system 0 (Å)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=None, help="folder for md_*.traj and md_*.log")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        workdir = args.out or Path(scratch)
        workdir.mkdir(parents=True, exist_ok=True)
        start = crystals(args.systems)
        systems = [atoms.copy() for atoms in start]
        temperatures = script(systems, args.steps, workdir, args.device)
        frames = read(workdir / "md_0.traj", ":")
        log_lines = (workdir / "md_0.log").read_text().splitlines()
    worst = float(np.abs(systems[0].positions - ase_reference(start[0], args.steps).positions).max())
    counts = f"{len(frames)} frames and {len(log_lines)} log lines per system"
    print(f"{args.systems} systems, {args.steps} steps: {counts}")
    for step, row in zip(range(0, args.steps + 1, 50), temperatures, strict=False):
        print(f"step {step:5d}: T = {np.mean(row):6.1f} K (mean of {len(row)} systems)")
    print(f"system 0 against ase.md.langevin.Langevin: largest position difference {worst:.2e} Å")
    return worst


if __name__ == "__main__":
    main()
