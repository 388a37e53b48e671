"""FIRE against ase.optimize.FIRE, step by step, per system inside a batch."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, ConvergenceHook
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def _systems():
    systems = [argon_bulk(2, seed=k, rattle=0.25) for k in range(3)]
    systems += ragged_systems(seed=2)[1:4]  # triclinic, cluster, slab
    return systems


@pytest.mark.parametrize(
    "params", [{}, {"dt": 0.05, "maxstep": 0.05, "Nmin": 2, "finc": 1.2, "fa": 0.9, "a": 0.2}]
)
def test_equals_ase_fire_step_by_step(params):
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-9), **params)
    engine.run(batch, n_steps=0)
    references = []
    for atoms in systems:
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        references.append((reference, AseFIRE(reference, logfile=None, **params)))
    ptr = batch.ptr.tolist()
    for step in range(60):
        engine.step()
        for _, optimizer in references:
            optimizer.step()
        for b, (reference, optimizer) in enumerate(references):
            ours = batch.positions[ptr[b] : ptr[b + 1]].numpy()
            np.testing.assert_allclose(
                ours, reference.positions, rtol=0, atol=1e-10, err_msg=f"step {step}, system {b}"
            )
            assert batch.fire_dt[b].item() == pytest.approx(optimizer.dt, rel=1e-12)
            assert batch.fire_a[b].item() == pytest.approx(optimizer.a, rel=1e-12)
            assert batch.fire_n[b].item() == optimizer.Nsteps


def test_run_stops_each_system_where_ase_converges():
    systems = _systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(0.01))
    engine.run(batch, n_steps=1000)
    assert engine.done
    ptr = batch.ptr.tolist()
    counts = []
    for b, atoms in enumerate(systems):
        reference = atoms.copy()
        reference.calc = AseLennardJones(**ARGON)
        optimizer = AseFIRE(reference, logfile=None)
        assert optimizer.run(fmax=0.01, steps=1000)
        counts.append(optimizer.nsteps)
        np.testing.assert_allclose(
            batch.positions[ptr[b] : ptr[b + 1]].numpy(), reference.positions, rtol=0, atol=1e-9
        )
    assert engine.step_count == max(counts)
    assert len(set(counts)) > 1  # the systems really converged at different steps


def test_default_convergence_is_fmax_005_and_state_fields_exist():
    engine = FIRE(LennardJones(**ARGON))
    assert (
        engine.convergence_hook.criteria[0].key == "fmax"
        and engine.convergence_hook.criteria[0].threshold == 0.05
    )
    batch = Batch.from_atoms(_systems(), device="cpu")
    engine.run(batch, n_steps=1)
    assert {"fire_velocities", "fire_dt", "fire_a", "fire_n"} <= set(batch.field_names())
    assert batch.velocities.abs().max() == 0.0  # FIRE's velocities are its own


def test_bad_maxstep():
    with pytest.raises(ValueError, match="maxstep"):
        FIRE(LennardJones(**ARGON), maxstep=0.0)
