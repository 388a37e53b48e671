"""A custom hook: record each system's lowest energy seen during MD, on the device, without syncing.

A hook is any object with ``stage``, ``frequency`` and ``__call__(ctx, stage)``.

Run:  python examples/custom_hook.py [--steps 200]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from ase.build import bulk

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import NVE, DynamicsStage


class LowestEnergy:
    """Keeps ``lowest[B]`` (eV) on the batch's device: a running minimum, no host copy per step."""

    stage = DynamicsStage.AFTER_COMPUTE
    frequency = 1

    def __init__(self) -> None:
        self.lowest: torch.Tensor | None = None

    def __call__(self, ctx, stage) -> None:
        energy = ctx.batch.energy.view(-1)
        self.lowest = energy.clone() if self.lowest is None else torch.minimum(self.lowest, energy)


def main(argv: list[str] | None = None) -> np.ndarray:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)

    systems = [bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2) for _ in range(4)]
    for seed, atoms in enumerate(systems):
        atoms.rattle(0.1, seed=seed)
    batch = Batch.from_atoms(systems, device=args.device)
    hook = LowestEnergy()
    NVE(LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True), dt=2.0, hooks=[hook]).run(
        batch, args.steps
    )
    lowest = hook.lowest.cpu().numpy()
    print("lowest energy per system (eV):", np.round(lowest, 6).tolist())
    return lowest


if __name__ == "__main__":
    main()
