"""LBFGS against ase.optimize.LBFGS, step by step, per system inside a ragged batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.optimize import LBFGS as AseLBFGS

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import ConvergenceHook
from nvalchemi_ase.dynamics.optimizers.lbfgs import LBFGS
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.lbfgs import LBFGSState, lbfgs_step, two_loop
from tests.dynamics.optimizer_checks import (
    ARGON,
    assert_cuda_steps_do_not_sync_and_equal_cpu,
    assert_refills_equal_ase_alone,
    assert_stops_where_ase_stops,
    relax_systems,
    step_along_with_ase,
)
from tests.tolerances import FLOAT64_ATOL

STEP_ATOL = 1e-10
"""Positions against ASE after every step, Å (the issue's ~1e-10)."""
TIGHT_FMAX = 1e-9
"""eV/Å: a threshold the step-by-step runs barely reach, so the systems keep stepping."""


@pytest.mark.parametrize(
    "params",
    [{}, {"memory": 3, "damping": 0.7, "alpha": 30.0, "maxstep": 0.05}],
    ids=["defaults", "short-memory"],
)
def test_equals_ase_lbfgs_step_by_step(params):
    batch, references = step_along_with_ase(LBFGS, AseLBFGS, params, 50, TIGHT_FMAX, STEP_ATOL)
    ptr = batch.ptr.tolist()
    for b, (_, optimizer) in enumerate(references):
        assert batch.lbfgs_iteration[b].item() == optimizer.state.iteration
        kept = len(optimizer.state.rho)  # min(memory, iterations), oldest first
        np.testing.assert_allclose(batch.lbfgs_rho[b, :kept].numpy(), optimizer.state.rho, rtol=1e-7)
        assert not batch.lbfgs_rho[b, kept:].any()
        s = batch.lbfgs_s[ptr[b] : ptr[b + 1], :kept].transpose(0, 1).reshape(kept, -1).numpy()
        np.testing.assert_allclose(s, np.array(optimizer.state.s), rtol=0, atol=1e-9)


def test_run_stops_each_system_where_ase_converges():
    systems = relax_systems(cluster=False)  # the loose cluster needs hundreds of steps
    assert_stops_where_ase_stops(LBFGS, AseLBFGS, systems, fmax=1e-3, steps=200)


def test_refilled_batches_equal_ase_alone():
    assert_refills_equal_ase_alone(LBFGS, AseLBFGS)


def test_first_step_is_force_over_alpha_then_damped():
    # No history: dx = F / alpha, scaled so the longest atom step is maxstep, times damping.
    positions = torch.zeros((3, 3), dtype=torch.float64)
    forces = torch.tensor([[7.0, 0.0, 0.0], [0.0, 70.0, 0.0], [0.0, 0.0, 7.0]], dtype=torch.float64)
    batch_idx = torch.tensor([0, 1, 1])
    state = LBFGSState(
        positions.new_zeros((3, 4, 3)),
        positions.new_zeros((3, 4, 3)),
        positions.new_zeros((2, 4)),
        torch.zeros(2, dtype=torch.long),
        positions,
        forces,
    )
    new, state = lbfgs_step(positions, forces, state, 70.0, 0.2, 0.5, batch_idx)
    assert torch.allclose(new[0], forces[0] / 70.0 * 0.5, rtol=0, atol=FLOAT64_ATOL)
    assert torch.allclose(new[1:], forces[1:] / 70.0 * 0.2 * 0.5, rtol=0, atol=FLOAT64_ATOL)
    assert state.iteration.tolist() == [1, 1] and not state.rho.any()  # nothing stored on the first step


def test_two_loop_inverts_a_quadratic_after_enough_pairs():
    # On E = ½ xᵀ A x (A diagonal), L-BFGS with pairs spanning all 3 directions satisfies H y = s for
    # the newest pair, and with exact steps along each axis the recursion gives A⁻¹ g exactly.
    curvature = torch.tensor([2.0, 5.0, 11.0], dtype=torch.float64)
    s = torch.eye(3, dtype=torch.float64).view(1, 3, 3)  # one atom, pairs along x, y, z
    y = s * curvature.view(1, 3, 1)
    rho = 1.0 / curvature.view(1, 3)
    gradient = torch.tensor([[1.0, -2.0, 3.0]], dtype=torch.float64)
    z = two_loop(gradient, s, y, rho, 1.0 / 70.0, torch.tensor([0]), loops=3)
    assert torch.allclose(z, gradient / curvature, rtol=1e-14, atol=0)


def test_default_convergence_and_state_fields():
    engine = LBFGS(LennardJones(**ARGON))
    criterion = engine.convergence_hook.criteria[0]
    assert (criterion.key, criterion.threshold) == ("fmax", 0.05)
    assert (engine.maxstep, engine.memory, engine.damping, engine.alpha) == (0.2, 100, 1.0, 70.0)
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine.run(batch, n_steps=1)
    fields = {"lbfgs_s", "lbfgs_y", "lbfgs_rho", "lbfgs_iteration", "lbfgs_positions0", "lbfgs_forces0"}
    assert fields <= set(batch.field_names())
    assert batch.lbfgs_s.shape == (batch.num_nodes, 100, 3)
    assert batch.velocities.abs().max() == 0.0


def test_state_follows_systems_through_slicing_and_joining():
    # Steps on the whole batch, then on a reordered slice joined with itself: same as in place.
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    hook = ConvergenceHook.from_fmax(TIGHT_FMAX)
    engine = LBFGS(LennardJones(**ARGON), memory=4, convergence_hook=hook)
    engine.run(batch, n_steps=6)
    part = Batch.cat([batch.index_select([3]), batch.index_select([0, 2])])
    LBFGS(LennardJones(**ARGON), memory=4, convergence_hook=hook).run(part, n_steps=6)
    engine.run(batch, n_steps=6)
    expected = batch.index_select([3, 0, 2])
    assert torch.allclose(part.positions, expected.positions, rtol=0, atol=STEP_ATOL)


@pytest.mark.parametrize(
    ("name", "value"), [("maxstep", 0.0), ("maxstep", 1.5), ("memory", -1), ("damping", 0.0), ("alpha", 0.0)]
)
def test_bad_parameters(name, value):
    with pytest.raises(ValueError, match=name):
        LBFGS(LennardJones(**ARGON), **{name: value})


def test_memory_mismatch_with_carried_state():
    batch = Batch.from_atoms(relax_systems(), device="cpu")
    LBFGS(LennardJones(**ARGON), memory=5).run(batch, n_steps=1)
    with pytest.raises(ValueError, match="memory"):
        LBFGS(LennardJones(**ARGON), memory=6).run(batch, n_steps=1)


@pytest.mark.gpu
def test_cuda_steps_do_not_sync_and_equal_cpu():
    assert_cuda_steps_do_not_sync_and_equal_cpu(LBFGS, TIGHT_FMAX)
