"""Test structures: ragged, periodic and not, triclinic, tiny and large cells."""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.build import bulk, fcc111, molecule


def argon_bulk(repeat: int = 2, seed: int = 0, rattle: float = 0.1) -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(repeat)
    atoms.rattle(rattle, seed=seed)
    return atoms


def ragged_systems(seed: int = 0) -> list[Atoms]:
    """Mixed sizes and boundary conditions, in the length scale of argon (σ = 3.4 Å)."""
    rng = np.random.default_rng(seed)
    systems = []
    systems.append(argon_bulk(2, seed=seed))  # 32 atoms, cubic, periodic
    tri = bulk("Ar", "fcc", a=5.3).repeat((3, 2, 2))  # triclinic primitive cell
    tri.rattle(0.15, seed=seed + 1)
    systems.append(tri)
    cluster = Atoms("Ar13", positions=rng.normal(scale=3.0, size=(13, 3)))  # molecule, no cell
    systems.append(_spread(cluster, 3.0))
    slab = fcc111("Ar", size=(3, 3, 3), a=5.26, vacuum=6.0)  # periodic in x, y only
    slab.rattle(0.1, seed=seed + 2)
    systems.append(slab)
    one = Atoms("Ar", cell=[[3.1, 0.0, 0.0], [1.2, 2.9, 0.0], [0.7, 0.4, 3.3]], pbc=True)  # far below rc
    systems.append(one)
    dimer = Atoms("Ar2", positions=[[0.0, 0.0, 0.0], [3.7, 0.2, 0.1]])
    systems.append(dimer)
    return systems


def _spread(atoms: Atoms, min_distance: float) -> Atoms:
    """Push apart atoms closer than ``min_distance`` (keeps LJ energies moderate)."""
    positions = atoms.positions
    for _ in range(200):
        d = positions[:, None] - positions[None]
        r = np.linalg.norm(d, axis=2) + np.eye(len(positions)) * 1e9
        if r.min() >= min_distance:
            break
        i, j = np.unravel_index(np.argmin(r), r.shape)
        push = d[i, j] / r[i, j] * (min_distance - r[i, j]) * 0.6
        positions[i] += push
        positions[j] -= push
    atoms.positions = positions
    return atoms


def random_cells(count: int, seed: int = 0) -> list[Atoms]:
    """Random triclinic cells, random pbc, random densities: the neighbour-list torture set."""
    rng = np.random.default_rng(seed)
    systems = []
    for _ in range(count):
        n = int(rng.integers(1, 40))
        cell = np.diag(rng.uniform(2.0, 9.0, 3)) + rng.uniform(-1.5, 1.5, (3, 3)) * (1 - np.eye(3))
        pbc = rng.random(3) < 0.7
        frac = rng.random((n, 3))
        positions = frac @ cell + rng.normal(scale=0.5, size=(n, 3))  # some atoms outside the cell
        systems.append(Atoms(f"H{n}", positions=positions, cell=cell, pbc=pbc))
    return systems


def water_and_friends() -> list[Atoms]:
    return [molecule("H2O"), molecule("CH4"), molecule("C6H6")]


def mlip_systems(seed: int = 0) -> list[Atoms]:
    """Six chemistries a universal potential knows, in ragged sizes: bulk, slab, a binary crystal,
    a molecule in a periodic box, a molecule with no cell, a triclinic cell (0.05 Å rattle)."""
    copper = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab = fcc111("Cu", size=(2, 2, 3), vacuum=5.0)
    slab.info.pop("adsorbate_info", None)
    salt = bulk("NaCl", "rocksalt", a=5.6)
    water = molecule("H2O")
    water.center(vacuum=4.0)
    water.pbc = True
    methane = molecule("CH4")
    silicon = bulk("Si", "diamond", a=5.43)
    silicon.set_cell(silicon.cell[:] + np.array([[0, 0.3, 0], [0.2, 0, 0], [0, 0.1, 0.4]]), scale_atoms=True)
    systems = [copper, slab, salt, water, methane, silicon]
    for k, atoms in enumerate(systems):
        atoms.rattle(0.05, seed=seed + k)
    return systems
