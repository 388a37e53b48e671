"""BFGS against ase.optimize.BFGS, step by step, per system inside a ragged batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.constraints import FixAtoms
from ase.optimize import BFGS as AseBFGS

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import ConvergenceHook
from nvalchemi_ase.dynamics.hooks import FreezeAtomsHook
from nvalchemi_ase.dynamics.optimizers.bfgs import BFGS
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.bfgs import BFGSState, bfgs_step, initial_hessian, update_hessian
from tests.dynamics.optimizer_checks import (
    ARGON,
    ase_reference,
    ase_step,
    assert_stops_where_ase_stops,
    relax_systems,
    step_along_with_ase,
)
from tests.tolerances import FLOAT64_ATOL

STEP_ATOL = 1e-10
"""Positions against ASE after every step, Å (the issue's ~1e-10)."""
TIGHT_FMAX = 1e-9
"""eV/Å: a threshold the step-by-step runs barely reach, so the systems keep stepping."""


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Many small eigen-decompositions: on a shared 2-core CPU, MKL's threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("params", [{}, {"maxstep": 0.05, "alpha": 30.0}])
def test_equals_ase_bfgs_step_by_step(params):
    batch, references = step_along_with_ase(BFGS, AseBFGS, params, 30, TIGHT_FMAX, STEP_ATOL)
    ptr = batch.ptr.tolist()
    for b, (_, optimizer) in enumerate(references):
        dofs = 3 * (ptr[b + 1] - ptr[b])
        hessian = batch.bfgs_hessian[b].numpy()
        np.testing.assert_allclose(hessian[:dofs, :dofs], optimizer.H, rtol=0, atol=1e-8 * optimizer.alpha)
        padding = hessian[dofs:, dofs:]
        assert np.array_equal(padding, optimizer.alpha * np.eye(len(padding)))  # alpha·I, untouched
        assert not hessian[:dofs, dofs:].any() and not hessian[dofs:, :dofs].any()  # never coupled


def test_fixed_atoms_through_the_freeze_hook_equal_ase():
    # FixAtoms zeroes the frozen atoms' forces and resets their positions; the Hessian still couples
    # them to the rest, so the raw step moves them and the freeze hook must put them back, as ASE does.
    systems = relax_systems(cluster=False)[1:]
    slab = systems[-1]
    slab.set_constraint(FixAtoms(mask=slab.positions[:, 2] < slab.positions[:, 2].min() + 1.0))
    batch = Batch.from_atoms(systems, device="cpu")
    hook = ConvergenceHook.from_fmax(TIGHT_FMAX)
    engine = BFGS(LennardJones(**ARGON), hooks=[FreezeAtomsHook()], convergence_hook=hook)
    engine.run(batch, n_steps=0)
    references = [ase_reference(AseBFGS, atoms) for atoms in systems]
    ptr = batch.ptr.tolist()
    for step in range(20):
        engine.step()
        for b, (reference, optimizer) in enumerate(references):
            ase_step(reference, optimizer, TIGHT_FMAX)
            ours = batch.positions[ptr[b] : ptr[b + 1]].numpy()
            np.testing.assert_allclose(
                ours, reference.positions, rtol=0, atol=STEP_ATOL, err_msg=f"step {step}, system {b}"
            )
    fixed = slab.constraints[0].index
    assert np.array_equal(batch.positions[ptr[-2] :][fixed].numpy(), slab.positions[fixed])


def test_run_stops_each_system_where_ase_converges():
    systems = relax_systems(cluster=False)  # the loose cluster needs hundreds of steps
    assert_stops_where_ase_stops(BFGS, AseBFGS, systems, fmax=1e-3, steps=200)


def test_first_step_is_force_over_alpha_scaled_to_maxstep():
    # Two systems (1 and 2 atoms) padded to width 6: H = alpha·I gives dx = F / alpha, then the cap.
    positions = torch.zeros((3, 3), dtype=torch.float64)
    forces = torch.tensor([[7.0, 0.0, 0.0], [0.0, 70.0, 0.0], [0.0, 0.0, 7.0]], dtype=torch.float64)
    batch_idx, ptr = torch.tensor([0, 1, 1]), torch.tensor([0, 1, 3])
    hessian = initial_hessian(2, 6, 70.0, positions)
    state = BFGSState(hessian, positions, forces, torch.zeros(2, dtype=torch.bool))
    new, state = bfgs_step(positions, forces, state, 0.2, batch_idx, ptr)
    assert torch.allclose(new[0], forces[0] / 70.0, rtol=0, atol=FLOAT64_ATOL)  # 0.1 Å < maxstep
    # System 1: longest step 1 Å ≥ 0.2, the whole step scaled by 0.2 (direction kept).
    assert torch.allclose(new[1:], forces[1:] / 70.0 * 0.2, rtol=0, atol=FLOAT64_ATOL)
    assert torch.equal(state.hessian, hessian)  # no update on the first step
    assert state.started.all()


def test_update_is_the_bfgs_formula_and_satisfies_the_secant_condition():
    generator = torch.Generator().manual_seed(0)
    hessian = initial_hessian(1, 6, 70.0, torch.zeros(1, dtype=torch.float64))
    dpos = torch.randn((1, 6), generator=generator, dtype=torch.float64)
    dgradient = 50.0 * dpos + torch.randn((1, 6), generator=generator, dtype=torch.float64)
    updated = update_hessian(hessian, dpos, dgradient, torch.tensor([False]))
    assert torch.allclose(updated[0] @ dpos[0], dgradient[0], rtol=1e-12, atol=0)  # H Δx = Δg
    assert torch.equal(update_hessian(hessian, dpos, dgradient, torch.tensor([True])), hessian)


def test_default_convergence_and_state_fields():
    engine = BFGS(LennardJones(**ARGON))
    criterion = engine.convergence_hook.criteria[0]
    assert (criterion.key, criterion.threshold) == ("fmax", 0.05)
    assert (engine.maxstep, engine.alpha) == (0.2, 70.0)
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    engine.run(batch, n_steps=1)
    assert {"bfgs_hessian", "bfgs_positions0", "bfgs_forces0", "bfgs_started"} <= set(batch.field_names())
    width = 3 * max(len(atoms) for atoms in systems)
    assert batch.bfgs_hessian.shape == (len(systems), width, width)
    assert batch.velocities.abs().max() == 0.0


def test_state_follows_systems_through_slicing():
    # Take steps on the whole batch, then continue on a reordered slice: same as continuing in place.
    systems = relax_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    hook = ConvergenceHook.from_fmax(TIGHT_FMAX)
    engine = BFGS(LennardJones(**ARGON), convergence_hook=hook)
    engine.run(batch, n_steps=5)
    part = batch.index_select([3, 0])
    BFGS(LennardJones(**ARGON), convergence_hook=hook).run(part, n_steps=5)
    engine.run(batch, n_steps=5)
    expected = batch.index_select([3, 0])
    assert torch.allclose(part.positions, expected.positions, rtol=0, atol=STEP_ATOL)


@pytest.mark.parametrize(("name", "value"), [("maxstep", 0.0), ("alpha", -1.0)])
def test_bad_parameters(name, value):
    with pytest.raises(ValueError, match=name):
        BFGS(LennardJones(**ARGON), **{name: value})


@pytest.mark.gpu
def test_cuda_equals_cpu():
    # torch.linalg.eigh syncs on CUDA (it checks its convergence flags on the host): one sync per step.
    systems = relax_systems()
    results = []
    for device in ("cpu", "cuda"):
        batch = Batch.from_atoms(systems, device=device)
        BFGS(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(TIGHT_FMAX)).run(
            batch, n_steps=20
        )
        results.append(batch.positions.cpu())
    assert torch.allclose(results[0], results[1], rtol=0, atol=1e-9)
