"""Relax a handful of structures with FIRE, then run Langevin MD on each, in one fused loop (``relax + md``).

Run:  python examples/relax_then_md.py [--systems 8] [--md-steps 200] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import torch
from ase import units
from ase.build import bulk

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook, NVTLangevin
from nvalchemi_ase.dynamics.hooks import LoggingHook
from nvalchemi_ase.ops.thermo import kinetic_energy


def main(argv: list[str] | None = None) -> list:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", type=int, default=8)
    parser.add_argument("--md-steps", type=int, default=200)
    parser.add_argument("--device", default=None)
    parser.add_argument("--log", default="relax_then_md.csv")
    args = parser.parse_args(argv)

    systems = []
    for seed in range(args.systems):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
        atoms.rattle(0.05 + 0.03 * seed, seed=seed)
        systems.append(atoms)
    batch = Batch.from_atoms(systems, device=args.device)
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)

    relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.01), n_steps=500)
    md = NVTLangevin(
        model,
        dt=5.0,
        temperature=60.0,
        friction=0.02,
        seed=0,
        n_steps=args.md_steps,
        initial_temperature=60.0,
        velocity_seed=0,
        hooks=[LoggingHook(frequency=20, backend="csv", log_path=args.log)],
    )
    pipeline = relax + md  # a FusedStage: one force call per step for every system
    pipeline.run(batch)

    ke = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
    atoms_per_system = torch.as_tensor(batch.counts, dtype=ke.dtype, device=ke.device)
    temperatures = (2 * ke / (3 * atoms_per_system * units.kB)).tolist()
    rounded = [round(t, 1) for t in temperatures]
    print(f"{pipeline.step_count} fused steps; final temperatures (K): {rounded}")
    print(f"relaxation budget exhausted for systems: {batch.unconverged.nonzero().flatten().tolist()}")
    return batch.to_atoms()


if __name__ == "__main__":
    main()
