"""MDMin against ase.optimize.MDMin, step by step, per system inside a ragged batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.optimize import MDMin as AseMDMin

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import ConvergenceHook
from nvalchemi_ase.dynamics.optimizers.mdmin import MDMin
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.mdmin import MDMinState, mdmin_step
from tests.dynamics.optimizer_checks import (
    ARGON,
    ase_reference,
    assert_cuda_steps_do_not_sync_and_equal_cpu,
    assert_refills_equal_ase_alone,
    assert_stops_where_ase_stops,
    relax_systems,
)
from tests.tolerances import FLOAT64_ATOL

STEP_ATOL = 1e-10
"""Positions against ASE after every step, Å (the issue's ~1e-10)."""


@pytest.mark.parametrize("params", [{}, {"dt": 0.5, "maxstep": 0.05}])
def test_equals_ase_mdmin_step_by_step(params):
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine = MDMin(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-9), **params)
    engine.run(batch, n_steps=0)
    references = [ase_reference(AseMDMin, atoms, **params) for atoms in systems]
    ptr = batch.ptr.tolist()
    for step in range(40):
        engine.step()
        for b, (reference, optimizer) in enumerate(references):
            optimizer.step()
            ours = batch.positions[ptr[b] : ptr[b + 1]].numpy()
            np.testing.assert_allclose(
                ours, reference.positions, rtol=0, atol=STEP_ATOL, err_msg=f"step {step}, system {b}"
            )
            np.testing.assert_allclose(
                batch.mdmin_velocities[ptr[b] : ptr[b + 1]].numpy().ravel(), optimizer.v, rtol=0, atol=1e-9
            )


def test_run_stops_each_system_where_ase_converges():
    assert_stops_where_ase_stops(MDMin, AseMDMin, relax_systems(), fmax=0.01, steps=500)


def test_refilled_batches_equal_ase_alone():
    assert_refills_equal_ase_alone(MDMin, AseMDMin)


def test_first_step_is_half_kick_and_maxstep_caps_longest_atom():
    # One atom pushed by F = (3, 4, 0): first step v = ½ dt F, dr = dt v, capped to maxstep.
    positions = torch.zeros((2, 3), dtype=torch.float64)
    forces = torch.tensor([[3.0, 4.0, 0.0], [0.3, 0.4, 0.0]], dtype=torch.float64)
    state = MDMinState(torch.zeros_like(positions), torch.zeros(2, dtype=torch.bool))
    new, state = mdmin_step(positions, forces, state, 0.2, 0.05, torch.tensor([0, 1]))
    assert torch.allclose(state.velocities, 0.1 * forces, rtol=0, atol=FLOAT64_ATOL)
    step = 0.2 * 0.1 * forces
    expected_first = step[0] * min(1.0, 0.05 / (1e-6 + 0.1))  # |dr| = 0.1 > maxstep: capped
    assert torch.allclose(new[0], expected_first, rtol=0, atol=FLOAT64_ATOL)
    assert torch.allclose(new[1], step[1], rtol=0, atol=FLOAT64_ATOL)  # |dr| = 0.01: not capped
    assert state.started.all()


def test_uphill_velocity_is_zeroed():
    # Second step with v against F: the projection resets v, only the half kick remains.
    positions = torch.zeros((1, 3), dtype=torch.float64)
    forces = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    state = MDMinState(torch.tensor([[-5.0, 1.0, 0.0]], dtype=torch.float64), torch.ones(1, dtype=torch.bool))
    _, state = mdmin_step(positions, forces, state, 0.2, 10.0, torch.tensor([0]))
    assert torch.allclose(state.velocities, 0.1 * forces, rtol=0, atol=FLOAT64_ATOL)


def test_default_convergence_and_state_fields():
    engine = MDMin(LennardJones(**ARGON))
    criterion = engine.convergence_hook.criteria[0]
    assert (criterion.key, criterion.threshold) == ("fmax", 0.05)
    assert (engine.dt, engine.maxstep) == (0.2, 0.2)
    batch = Batch.from_atoms(relax_systems(), device="cpu")
    engine.run(batch, n_steps=1)
    assert {"mdmin_velocities", "mdmin_started"} <= set(batch.field_names())
    assert batch.velocities.abs().max() == 0.0  # MDMin's velocities are its own


@pytest.mark.parametrize(("name", "value"), [("maxstep", 0.0), ("dt", -0.1)])
def test_bad_parameters(name, value):
    with pytest.raises(ValueError, match=name):
        MDMin(LennardJones(**ARGON), **{name: value})


@pytest.mark.gpu
def test_cuda_steps_do_not_sync_and_equal_cpu():
    assert_cuda_steps_do_not_sync_and_equal_cpu(MDMin, 1e-9)
