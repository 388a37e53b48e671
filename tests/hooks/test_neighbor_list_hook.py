"""NeighborListHook: matscipy's pairs on the batch during a compute; the skin rebuilds only what moved."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.dynamics.base import DynamicsStage
from nvalchemi_ase.hooks.neighbor_list import NeighborListHook
from nvalchemi_ase.hooks.protocol import Hook, HookContext
from nvalchemi_ase.models import LennardJones
from tests.neighbors.reference import pairs_of_system, reference_pairs
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
TRAJECTORY_ATOL = 1e-12  # Å: the same forces, summed in another order


def _fire(hook: NeighborListHook, batch: Batch, stage: DynamicsStage) -> None:
    hook(HookContext(batch=batch, dynamics=None, step_count=0, stage=stage), stage)


def _pairs_within(batch: Batch, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    neighbors = batch.neighbors
    vectors = neighbors.vectors(batch.positions)
    inside = (neighbors.mask & (vectors.square().sum(dim=2) < cutoff**2)).reshape(-1)
    return (
        neighbors.i[inside].numpy(),
        neighbors.j[inside].numpy(),
        neighbors.pair_shifts[inside].numpy(),
    )


def _argon_batch(count: int = 3, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    systems = [argon_bulk(2, seed=seed + k, rattle=0.2) for k in range(count)]
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=0.02, size=(len(atoms), 3)))
    return Batch.from_atoms(systems, device="cpu")


def test_is_a_two_stage_hook_around_the_compute():
    hook = NeighborListHook(8.5, skin=1.0)
    assert isinstance(hook, Hook)
    assert hook.stage is None and hook.frequency == 1  # a two-stage hook: see hook.stages
    assert hook.stages == (DynamicsStage.BEFORE_COMPUTE, DynamicsStage.AFTER_COMPUTE)
    engine = NVE(LennardJones(**ARGON), dt=5.0, hooks=[hook])
    assert engine.hooks_at(DynamicsStage.BEFORE_COMPUTE) == [hook]
    assert engine.hooks_at(DynamicsStage.AFTER_COMPUTE) == [hook]


def test_pairs_on_the_batch_equal_matscipys():
    systems = ragged_systems()
    batch = Batch.from_atoms(systems, device="cpu")
    hook = NeighborListHook(8.5, skin=1.0)
    _fire(hook, batch, DynamicsStage.BEFORE_COMPUTE)
    assert batch.neighbors.cutoff == pytest.approx(9.5)
    assert "neighbors" not in batch.field_names()  # a plain attribute, not a field
    ours = _pairs_within(batch, 8.5)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        assert pairs_of_system(*ours, ptr[b], ptr[b + 1]) == reference_pairs(atoms, 8.5), f"system {b}"


def test_the_list_is_gone_after_the_compute():
    batch = _argon_batch()
    hook = NeighborListHook(8.5)
    _fire(hook, batch, DynamicsStage.BEFORE_COMPUTE)
    assert batch.neighbors is hook.neighbor_list.update(batch)
    _fire(hook, batch, DynamicsStage.AFTER_COMPUTE)
    assert batch.neighbors is None and "neighbors" not in vars(batch)
    _fire(hook, batch, DynamicsStage.AFTER_COMPUTE)  # removing twice is harmless
    assert batch.neighbors is None and "neighbors" not in vars(batch)


def test_only_systems_that_moved_past_half_the_skin_are_rebuilt():
    batch = _argon_batch(count=4)
    hook = NeighborListHook(8.5, skin=1.0)
    _fire(hook, batch, DynamicsStage.BEFORE_COMPUTE)
    assert hook.rebuilds == batch.num_graphs  # the first build builds every system
    positions = batch.positions.clone()
    positions[batch.batch_idx == 2] += torch.tensor([0.3, -0.2, 0.1], dtype=positions.dtype)  # |d| < 0.5
    batch.positions = positions
    _fire(hook, batch, DynamicsStage.BEFORE_COMPUTE)
    assert hook.rebuilds == batch.num_graphs  # within skin/2: nothing rebuilt
    positions = batch.positions.clone()
    positions[batch.ptr[2]] += torch.tensor([0.6, 0.0, 0.0], dtype=positions.dtype)  # one atom, > skin/2
    batch.positions = positions
    _fire(hook, batch, DynamicsStage.BEFORE_COMPUTE)
    assert hook.rebuilds == batch.num_graphs + 1  # system 2 alone
    assert hook.rebuilds == hook.neighbor_list.rebuilds
    ours = _pairs_within(batch, 8.5)
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(batch.to_atoms()):
        assert pairs_of_system(*ours, ptr[b], ptr[b + 1]) == reference_pairs(atoms, 8.5), f"system {b}"


def test_nve_with_the_hook_follows_the_same_trajectory():
    plain, hooked = _argon_batch(seed=3), _argon_batch(seed=3)
    NVE(LennardJones(**ARGON), dt=5.0).run(plain, n_steps=60)
    hook = NeighborListHook(8.5, skin=1.0)
    NVE(LennardJones(**ARGON), dt=5.0, hooks=[hook]).run(hooked, n_steps=60)
    torch.testing.assert_close(hooked.positions, plain.positions, rtol=0, atol=TRAJECTORY_ATOL)
    torch.testing.assert_close(hooked.velocities, plain.velocities, rtol=0, atol=TRAJECTORY_ATOL)
    torch.testing.assert_close(hooked.energy, plain.energy, rtol=1e-12, atol=0)
    assert hook.rebuilds < 61 * hooked.num_graphs  # the skin let some steps reuse the list
    assert hooked.neighbors is None and "neighbors" not in vars(hooked)


def test_the_model_uses_the_hooks_list_instead_of_its_own():
    batch = _argon_batch(seed=4)
    model = LennardJones(**ARGON)
    hook = NeighborListHook(8.5, skin=1.0)
    NVE(model, dt=5.0, hooks=[hook]).run(batch, n_steps=5)
    assert model.neighbor_list.rebuilds == 0  # never built: every compute found batch.neighbors
    assert hook.rebuilds >= batch.num_graphs


class _FailingLennardJones(LennardJones):
    def forward(self, batch, properties=("energy", "forces")):
        raise RuntimeError("model failed")


def test_an_interrupted_compute_leaves_no_list_behind():
    batch = _argon_batch()
    engine = NVE(_FailingLennardJones(**ARGON), dt=5.0, hooks=[NeighborListHook(8.5)])
    with pytest.raises(RuntimeError, match="model failed"):
        engine.run(batch, n_steps=1)
    assert batch.neighbors is None and "neighbors" not in vars(batch)  # run() closed the hook


def test_a_model_cutoff_beyond_the_hooks_is_refused_at_registration():
    with pytest.raises(ValueError, match="cutoff"):
        NVE(LennardJones(**ARGON), dt=5.0, hooks=[NeighborListHook(6.0, skin=3.0)])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"cutoff": 0.0}, "cutoff"),
        ({"cutoff": -1.0}, "cutoff"),
        ({"cutoff": 8.5, "skin": -0.1}, "skin"),
        ({"cutoff": 8.5, "frequency": 2}, "frequency"),
        ({"cutoff": 8.5, "frequency": 0}, "frequency"),
        ({"cutoff": 8.5, "max_neighbors": 0}, "max_neighbors"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NeighborListHook(**kwargs)


@pytest.mark.gpu
def test_cuda_pairs_on_the_batch_equal_matscipys():
    systems = ragged_systems()
    batch = Batch.from_atoms(systems, device="cuda")
    _fire(NeighborListHook(8.5, skin=1.0), batch, DynamicsStage.BEFORE_COMPUTE)
    neighbors = batch.neighbors
    vectors = neighbors.vectors(batch.positions)
    inside = (neighbors.mask & (vectors.square().sum(dim=2) < 8.5**2)).reshape(-1).cpu()
    ours = (
        neighbors.i.cpu()[inside].numpy(),
        neighbors.j.cpu()[inside].numpy(),
        neighbors.pair_shifts.cpu()[inside].numpy(),
    )
    ptr = batch.ptr.tolist()
    for b, atoms in enumerate(systems):
        assert pairs_of_system(*ours, ptr[b], ptr[b + 1]) == reference_pairs(atoms, 8.5), f"system {b}"
