"""Batched optimizers against ASE's: the reference set-up, runs to convergence, refilled batches."""

from __future__ import annotations

import contextlib

import numpy as np
import torch
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import ConvergenceHook, FusedStage, InflightSampler
from nvalchemi_ase.models import LennardJones
from tests.cuda import no_syncs
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


def step_along_with_ase(engine_class, ase_class, params: dict, steps: int, fmax: float, atol: float):
    """Our engine and ASE's optimizer (each system alone) step together on ``relax_systems()``;
    positions agree to ``atol`` after every step. Returns the batch and ASE's ``(atoms, optimizer)`` pairs."""
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = engine_class(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(fmax), **params)
    engine.run(batch, n_steps=0)
    references = [ase_reference(ase_class, atoms, **params) for atoms in systems]
    ptr = batch.ptr.tolist()
    for step in range(steps):
        engine.step()
        for b, (reference, optimizer) in enumerate(references):
            ase_step(reference, optimizer, fmax)
            ours = batch.positions[ptr[b] : ptr[b + 1]].numpy()
            np.testing.assert_allclose(
                ours, reference.positions, rtol=0, atol=atol, err_msg=f"step {step}, system {b}"
            )
    return batch, references


def assert_cuda_steps_do_not_sync_and_equal_cpu(engine_class, fmax: float) -> None:
    """Ten steps on CUDA raise no hidden sync and end where the same ten steps on the CPU end."""
    results = []
    for device in ("cpu", "cuda"):
        batch = Batch.from_atoms(relax_systems(), device=device)
        hook = ConvergenceHook.from_fmax(fmax, frequency=1000)  # the host check stays out of the window
        engine = engine_class(LennardJones(**ARGON), convergence_hook=hook)
        engine.run(batch, n_steps=3)
        with no_syncs() if device == "cuda" else contextlib.nullcontext():
            for _ in range(10):
                engine.step(batch)
        results.append(batch.positions.cpu())
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-9)
