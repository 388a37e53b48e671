"""NVE's second half kick done by the pair kernel as it writes the forces: the same bits as the
kick after the model, on every path the kernel takes, and declined where it cannot apply."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, BaseDynamics, DynamicsStage
from nvalchemi_ase.hooks import HookContext
from nvalchemi_ase.models import LennardJones, evaluate, pair_half_kernel, pair_kernel
from nvalchemi_ase.neighbors import NeighborList
from nvalchemi_ase.ops import verlet_kernel, warp_launch
from nvalchemi_ase.units import fs
from tests.structures import argon_bulk, ragged_systems

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "ro": 6.0, "smooth": True}
DT = 2.0 * fs


def _systems(layout: str) -> list[Atoms]:
    """Whole systems in shares, or a large box cut into chunks (LARGE_SYSTEM lowered) beside small ones."""
    systems = ragged_systems(seed=4) if layout == "system-shares" else [argon_bulk(3, seed=2)]
    systems += ragged_systems(seed=12)[1:] if layout == "chunks" else []
    rng = np.random.default_rng(0)
    for atoms in systems:
        atoms.set_velocities(rng.normal(scale=0.02, size=(len(atoms), 3)))
    return systems


@pytest.fixture
def split_rows(monkeypatch):
    """Small systems get shares of their own, and a system of more than 64 rows is cut into chunks."""
    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 4)
    monkeypatch.setattr(pair_half_kernel, "LARGE_SYSTEM", 64)


@pytest.fixture
def torch_threads():
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


def _offered_call(model, batch, *properties):
    """One model call (``evaluate``, its default properties unless given) with a second half kick of
    ``batch`` offered: the offer and the results."""
    second_kick = verlet_kernel.SecondKick(batch.velocities, batch.masses, DT)
    model.offer_kick(second_kick)
    return second_kick, evaluate(model, batch, *properties)


@pytest.mark.parametrize("layout", ["system-shares", "chunks"])
@pytest.mark.parametrize("threads", [1, 3])
def test_the_kick_with_the_forces_has_the_bits_of_the_kick_after_them(
    layout, threads, split_rows, torch_threads
):
    torch_threads(threads)
    batch = Batch.from_atoms(_systems(layout), device="cpu")
    model = LennardJones(**ARGON)
    plain = evaluate(model, batch, ("energy", "forces"))
    second_kick, kicked = _offered_call(model, batch, ("energy", "forces"))
    assert second_kick.taken
    plan = next(iter(model.neighbor_list._current.half.plans.values()))
    assert (plan.starts is not None) == (layout == "chunks")  # the path meant was taken
    assert torch.equal(kicked["forces"], plain["forces"])
    assert torch.equal(kicked["energy"], plain["energy"])
    expected = verlet_kernel.half_kick(batch.velocities, plain["forces"], batch.masses, DT)
    assert torch.equal(second_kick.kicked, expected)
    assert not torch.equal(second_kick.kicked, batch.velocities)


def test_an_offer_holds_for_one_call_only():
    batch = Batch.from_atoms(_systems("system-shares"), device="cpu")
    model = LennardJones(**ARGON)
    evaluate(model, batch)
    second_kick, _ = _offered_call(model, batch)
    second_kick.taken = False
    evaluate(model, batch)
    assert not second_kick.taken


def test_the_full_list_kernel_declines_the_kick(monkeypatch):
    """The full-list kernel (CUDA's, and a CPU list rebuilt every call) leaves the kick to the engine
    and makes no velocities for it."""
    monkeypatch.setattr(pair_kernel, "HALF_LIST_ON_CPU", False)
    batch = Batch.from_atoms(_systems("system-shares"), device="cpu")
    model = LennardJones(**ARGON)
    evaluate(model, batch)
    second_kick, _ = _offered_call(model, batch)
    assert "half" not in model.neighbor_list._current.__dict__
    assert not second_kick.taken and second_kick.kicked is None


def test_a_list_that_overflowed_declines_the_kick(monkeypatch):
    """Forces of an incomplete pair set are replaced by NaN after the kernel: the kick made with the
    kernel's forces must not be used. (A CPU list overflows only when it does not check its room on
    the host, and such a list takes the full-list kernel: the half-list kernel is made to take it.)"""
    monkeypatch.setattr(pair_kernel, "uses_half_list", lambda neighbors: True)
    rng = np.random.default_rng(5)
    dense = Atoms("Ar60", positions=rng.random((60, 3)) * 6.0, cell=[30.0] * 3, pbc=True)
    sparse = Atoms("Ar8", positions=rng.random((8, 3)) * 20.0, cell=[30.0] * 3, pbc=True)
    batch = Batch.from_atoms([sparse, dense], device="cpu")
    dense_positions = batch.positions.clone()
    model = LennardJones(**ARGON)
    model.neighbor_list = NeighborList(model.cutoff, max_neighbors=8, sync_check=False)
    batch.positions = batch.positions * 4.0  # dilute: the first builds size the room for this
    evaluate(model, batch)
    batch.positions = dense_positions
    second_kick, results = _offered_call(model, batch)
    assert "half" in model.neighbor_list._current.__dict__  # the half-list kernel ran
    assert model.neighbor_list._current.overflow.tolist() == [False, True]
    assert not second_kick.taken
    assert bool(results["forces"][8:].isnan().all())


class _Between:
    """A hook between the forces and the kick (AFTER_COMPUTE): the kick must use what it leaves."""

    stage = DynamicsStage.AFTER_COMPUTE
    frequency = 1

    def __init__(self, change: str) -> None:
        self.change = change

    def __call__(self, ctx: HookContext, stage) -> None:
        batch = ctx.batch
        if self.change == "replaced-forces":
            batch.forces = batch.forces * 0.5
        elif self.change == "forces-in-place":
            batch.forces.mul_(0.5)
        elif self.change == "velocities-in-place":
            batch.velocities.mul_(0.999)
        elif self.change == "dt":
            ctx.dynamics.dt = 1.9 if ctx.step_count % 2 else 2.0
        # "nothing": a check that only reads, or a clamp that clamped nothing


class _Observer:
    """A hook at AFTER_STEP, after the kick: the model may still do the kick."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self) -> None:
        self.seen = 0

    def __call__(self, ctx: HookContext, stage) -> None:
        self.seen += 1


def _nve(systems, hooks, offers: list) -> Batch:
    model = LennardJones(**ARGON, skin=0.3)
    offer = model.offer_kick

    def recorded(second_kick):
        offers.append(second_kick)
        offer(second_kick)

    model.offer_kick = recorded
    batch = Batch.from_atoms(systems, device="cpu")
    NVE(model, dt=2.0, hooks=hooks).run(batch, n_steps=120)
    return batch


CHANGES = ["replaced-forces", "forces-in-place", "velocities-in-place", "dt"]


@pytest.mark.parametrize("hook", [None, "observer", "nothing", *CHANGES])
@pytest.mark.parametrize("layout", ["system-shares", "chunks"])
def test_nve_with_the_kernels_kick_keeps_the_trajectorys_bits(
    layout, hook, split_rows, torch_threads, monkeypatch
):
    """The model's kick is used unless a hook between the forces and the kick changed what the kick
    reads; either way the trajectory has the bits of kicking after the model and the hooks."""
    torch_threads(2)
    systems = _systems(layout)
    hooks = {None: list, "observer": lambda: [_Observer()]}.get(hook, lambda: [_Between(hook)])
    offers: list = []
    fused = _nve(systems, hooks(), offers)
    made = [offer for offer in offers if offer is not None]
    assert len(made) == 120 and all(offer.taken for offer in made)
    velocities = fused.velocities
    # the reference: every kick done after the model and the hooks, as before the model could do it
    monkeypatch.setattr(NVE, "_forces_then_post_update", BaseDynamics._forces_then_post_update)
    offers.clear()
    stepped = _nve(systems, hooks(), offers)
    assert offers == []
    for key in ("positions", "velocities", "forces", "energy"):
        assert torch.equal(getattr(fused, key), getattr(stepped, key)), key
    assert (velocities is made[-1].kicked) == (hook not in CHANGES)  # the model's kick was the one kept
