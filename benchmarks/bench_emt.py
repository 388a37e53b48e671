"""EMT benchmarks, measured in one run and printed as ratios.

1. EMT energy + forces for 64 Cu systems of 108 atoms: the batched model in
   one call against ASE's ``EMT`` system by system (all systems, once).
2. NVE of the same systems through our engine (``NVE(EMT(), dt=2.0)``) against
   ASE's ``VelocityVerlet`` + ``EMT``. ASE is timed on a few systems for a few
   steps and compared per system-step (its cost is linear in both: it runs
   each system alone).

Run:  python benchmarks/bench_emt.py [--device cpu|cuda] [--systems 64] [--steps 100] [--dtype float64]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from common import ase_verlet_per_system_step, machine, measure, time_nve

from nvalchemi_ase import Batch
from nvalchemi_ase.models import evaluate
from nvalchemi_ase.models.emt import EMT


def copper_systems(count: int) -> list:
    rng = np.random.default_rng(0)
    systems = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(3)  # 108 atoms
        atoms.rattle(0.05, seed=k)
        atoms.set_velocities(rng.normal(scale=0.01, size=(len(atoms), 3)))
        systems.append(atoms)
    return systems


def forces(systems: list, device: str, dtype: torch.dtype) -> tuple[float, float, float]:
    """Seconds per call: batched, ASE one system after another; and the largest force difference."""
    batch = Batch.from_atoms(systems, device=device, dtype=dtype)
    model = EMT().to(device)
    batched = measure(lambda: evaluate(model, batch), repeats=5, device=device)
    ours = evaluate(model, batch)["forces"].double().cpu().numpy()
    reference: list[np.ndarray] = []

    def ase_loop() -> None:
        reference.clear()
        for atoms in systems:
            atoms = atoms.copy()
            atoms.calc = AseEMT()
            reference.append(atoms.get_forces())

    ase_s = measure(ase_loop, repeats=1, warmup=0)
    return batched, ase_s, float(np.abs(ours - np.concatenate(reference)).max())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--systems", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    systems = copper_systems(args.systems)
    atoms = sum(len(a) for a in systems)
    print(
        f"machine: {machine()}; device {args.device}, {args.dtype}; "
        f"{torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f} "
        "(other processes on the cores slow the threaded torch side most)"
    )

    batched, ase_s, difference = forces(systems, args.device, dtype)
    print(
        f"EMT energy+forces, {args.systems} x 108 Cu: batched {batched * 1e3:.1f} ms, "
        f"ASE EMT system by system {ase_s * 1e3:.0f} ms -> {ase_s / batched:.1f}x "
        f"({atoms / batched:.3g} atoms/s); largest force difference {difference:.1e} eV/Å"
    )

    ours = time_nve(EMT(), systems, args.steps, args.device, dtype)
    per_step = ours / (args.systems * args.steps)
    reference = ase_verlet_per_system_step(systems[:4], AseEMT, 10)
    print(
        f"NVE {args.systems} x 108 Cu, {args.steps} steps of 2 fs: ours {ours:.2f} s "
        f"({per_step * 1e3:.3f} ms per system-step, {atoms * args.steps / ours:.3g} atom-steps/s); "
        f"ASE VelocityVerlet + EMT {reference * 1e3:.2f} ms per system-step "
        f"(timed on 4 systems x 10 steps) -> {reference / per_step:.1f}x"
    )


if __name__ == "__main__":
    main()
