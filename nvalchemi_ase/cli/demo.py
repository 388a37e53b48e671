"""The demo's built-in data set: a few dozen rattled structures of mixed sizes, made with ase.build."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111


def demo_structures(count: int = 32, seed: int = 0) -> list[Atoms]:
    """Copper bulk (cubic and primitive cells), slabs and clusters, 4 to 108 atoms, rattled 0.02–0.2 Å."""
    rng = np.random.default_rng(seed)
    made = []
    for k in range(count):
        kind = k % 4
        if kind == 0:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(int(rng.integers(1, 4)))
        elif kind == 1:
            atoms = bulk("Cu", "fcc", a=3.61).repeat(tuple(int(n) for n in rng.integers(2, 4, 3)))
        elif kind == 2:
            atoms = fcc111("Cu", size=(2, 2, int(rng.integers(2, 4))), a=3.61, vacuum=6.0)
            atoms.info.pop("adsorbate_info", None)
        else:
            atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
            atoms.pbc = False
            atoms.cell = np.zeros((3, 3))  # a cluster cut from the crystal
        atoms.rattle(0.02 + 0.18 * rng.random(), seed=int(rng.integers(1 << 30)))
        atoms.info["name"] = f"demo-{k:02d}"
        made.append(atoms)
    return made
