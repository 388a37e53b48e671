"""A Langevin trajectory that does not depend on its batch mates.

Runs one argon crystal alone with ``NVTLangevin(seed=0)``, then the same
crystal (same ``system_id``) inside a batch of other structures, in another
position, and prints how far apart the two trajectories end. With the default
counter-based noise source a system's random numbers are a function of the
seed, its ``system_id`` and its step only, so the two agree to round-off.
The ASE look-alikes plug in ASE's numpy streams instead
(``nvalchemi_ase.dynamics.noise.NumpyNoise``).

Run:  python examples/batch_independent_noise.py [--steps 50] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import torch
from ase.build import bulk

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import NVTLangevin

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def crystal(repeat: int, seed: int):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(0.1, seed=seed)
    return atoms


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    model = LennardJones(**ARGON)

    alone = Batch.from_atoms([crystal(2, seed=7)], device=args.device)
    alone.system_id[:] = 42  # the id the crystal also has in the batch below
    NVTLangevin(model, dt=2.0, temperature=300.0, friction=0.01, seed=0).run(alone, n_steps=args.steps)

    others = [crystal(1, seed=1), crystal(2, seed=2), crystal(7 // 3, seed=3)]
    shared = Batch.from_atoms([others[0], crystal(2, seed=7), *others[1:]], device=args.device)
    shared.system_id[:] = torch.tensor([0, 42, 1, 2], device=shared.device)
    NVTLangevin(model, dt=2.0, temperature=300.0, friction=0.01, seed=0).run(shared, n_steps=args.steps)

    start, stop = shared.ptr[1].item(), shared.ptr[2].item()
    difference = (shared.positions[start:stop] - alone.positions).abs().max().item()
    print(f"after {args.steps} steps, alone vs. in a batch of 4: max |Δx| = {difference:.2e} Å")
    return difference


if __name__ == "__main__":
    main()
