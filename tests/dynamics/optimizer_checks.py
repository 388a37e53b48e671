"""Batched optimizers against ASE's: the reference set-up, runs to convergence, refilled batches."""

from __future__ import annotations

import numpy as np
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import ConvergenceHook, FusedStage, InflightSampler
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def relax_systems(cluster: bool = True) -> list:
    """Ragged: 4, 4 and 32 argon atoms in cubic cells, a 13-atom cluster (optional), a 27-atom slab."""
    systems = [argon_bulk(1, seed=k, rattle=0.2) for k in range(2)]
    systems.append(argon_bulk(2, seed=2, rattle=0.2))
    cluster_and_slab = ragged_systems(seed=2)[2:4]
    return systems + (cluster_and_slab if cluster else cluster_and_slab[1:])


def ase_reference(ase_class, atoms, **params):
    """A copy of ``atoms`` on ASE's LennardJones, and ASE's optimizer on it."""
    reference = atoms.copy()
    reference.calc = AseLennardJones(**ARGON)
    return reference, ase_class(reference, logfile=None, **params)


def ase_step(reference, optimizer, fmax: float) -> None:
    """One step of ASE's optimizer unless the system has converged (as ``run`` would stop it)."""
    if np.linalg.norm(reference.get_forces(), axis=1).max() >= fmax:
        optimizer.step()


def assert_stops_where_ase_stops(engine_class, ase_class, systems, fmax: float, steps: int) -> None:
    """Each system ends where ASE's ``run(fmax)`` ends it alone, the engine stops after the slowest,
    and the systems really converged at different steps."""
    batch = Batch.from_atoms(systems, device="cpu")
    engine = engine_class(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(fmax))
    engine.run(batch, n_steps=steps)
    assert engine.done
    ptr = batch.ptr.tolist()
    counts = []
    for b, atoms in enumerate(systems):
        reference, optimizer = ase_reference(ase_class, atoms)
        assert optimizer.run(fmax=fmax, steps=steps)
        counts.append(optimizer.nsteps)
        np.testing.assert_allclose(
            batch.positions[ptr[b] : ptr[b + 1]].numpy(), reference.positions, rtol=0, atol=1e-9
        )
    assert engine.step_count == max(counts)
    assert len(set(counts)) > 1


def assert_refills_equal_ase_alone(engine_class, ase_class) -> None:
    """Eight structures (4 or 8 atoms) streamed three at a time: each relaxation, carried through
    the refills (slicing and joining its state), ends where ASE's optimizer ends on it alone."""
    structures = []
    for k in range(8):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((1 + k % 2, 1, 1))
        atoms.rattle(0.05 + 0.02 * k, seed=k)
        structures.append(atoms)
    engine = engine_class(
        LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(0.01), n_steps=300
    )
    results = FusedStage([engine]).run_inflight(InflightSampler(structures, max_systems=3, device="cpu"))
    for k, (atoms, result) in enumerate(zip(structures, results, strict=True)):
        reference, optimizer = ase_reference(ase_class, atoms)
        assert optimizer.run(fmax=0.01, steps=300)
        np.testing.assert_allclose(
            result.positions, reference.positions, rtol=0, atol=1e-9, err_msg=f"structure {k}"
        )
