"""FusedStage: the spec's fused firing order, one compute per step, migration, budgets, no cross-talk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, DynamicsStage, FusedStage, NVTLangevin
from nvalchemi_ase.hooks import NeighborListHook
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.thermo import kinetic_energy
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
SUB_STAGE_EVENTS = [
    DynamicsStage.BEFORE_STEP,
    DynamicsStage.AFTER_COMPUTE,
    DynamicsStage.BEFORE_PRE_UPDATE,
    DynamicsStage.AFTER_POST_UPDATE,
    DynamicsStage.AFTER_STEP,
]


def _systems(rattles=(0.05, 0.15, 0.25, 0.35)):
    return [argon_bulk(1, seed=k, rattle=r) for k, r in enumerate(rattles)]


class Journal:
    """Records (owner, stage) across several hooks into one shared list."""

    def __init__(self):
        self.events: list[tuple[str, DynamicsStage]] = []

    def hook(self, owner: str, stages=tuple(DynamicsStage)):
        journal = self

        class Entry:
            stage = None

            def __init__(self):
                self.stages = tuple(stages)
                self.frequency = 1

            def __call__(self, ctx, stage):
                journal.events.append((owner, stage))

        return Entry()


@pytest.mark.parametrize("count", [2, 3])
def test_fused_firing_order_matches_the_spec(count):
    journal = Journal()
    model = LennardJones(**ARGON)
    stages = [NVE(model, dt=1.0, n_steps=100, hooks=[journal.hook(f"s{k}")]) for k in range(count)]
    fused = FusedStage(
        stages, hooks=[journal.hook("fused", [DynamicsStage.BEFORE_COMPUTE, DynamicsStage.AFTER_COMPUTE])]
    )
    batch = Batch.from_atoms(_systems()[:2], device="cpu")
    fused.run(batch, n_steps=1)
    journal.events.clear()
    fused.step(batch)
    subs = [f"s{k}" for k in range(count)]
    expected = [(s, DynamicsStage.BEFORE_STEP) for s in subs]
    expected += [(s, DynamicsStage.BEFORE_PRE_UPDATE) for s in subs]
    expected += [("fused", DynamicsStage.BEFORE_COMPUTE), ("fused", DynamicsStage.AFTER_COMPUTE)]
    expected += [(s, DynamicsStage.AFTER_COMPUTE) for s in subs]
    expected += [(s, DynamicsStage.AFTER_POST_UPDATE) for s in subs]
    expected += [(s, DynamicsStage.AFTER_STEP) for s in subs]
    assert journal.events == expected
    never = {DynamicsStage.BEFORE_COMPUTE, DynamicsStage.AFTER_PRE_UPDATE, DynamicsStage.BEFORE_POST_UPDATE}
    assert not any(owner != "fused" and stage in never for owner, stage in journal.events)


def test_on_converge_fires_on_the_sub_stage_after_its_after_step():
    journal = Journal()
    model = LennardJones(**ARGON)
    relax = FIRE(model, hooks=[journal.hook("relax")], convergence_hook=ConvergenceHook.from_fmax(1e3))
    md = NVE(model, dt=1.0, n_steps=2, hooks=[journal.hook("md")])
    (relax + md).run(Batch.from_atoms(_systems()[:2], device="cpu"), n_steps=1)
    assert journal.events[-3:] == [
        ("relax", DynamicsStage.AFTER_STEP),
        ("md", DynamicsStage.AFTER_STEP),
        ("relax", DynamicsStage.ON_CONVERGE),
    ]


def test_one_model_call_per_fused_step():
    calls = []
    model = LennardJones(**ARGON)
    original = model.forward

    def counting(batch, properties=("energy", "forces")):
        calls.append(1)
        return original(batch, properties)

    model.forward = counting
    fused = (
        FIRE(model, n_steps=50)
        + NVE(model, dt=1.0, n_steps=50)
        + NVTLangevin(model, dt=1.0, temperature=50.0, friction=0.01, n_steps=5)
    )
    fused.run(Batch.from_atoms(_systems(), device="cpu"), n_steps=7)
    assert len(calls) == 1 + 7  # the priming compute, then one per step


def test_fire_then_nve_fused_equals_fire_then_nve_run_separately():
    systems = _systems()
    fused_batch = Batch.from_atoms(systems, device="cpu")
    separate = fused_batch.clone()
    model = LennardJones(**ARGON)
    relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.01), n_steps=500)
    (relax + NVE(model, dt=2.0, n_steps=30)).run(fused_batch)
    FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(0.01)).run(separate, n_steps=500)
    NVE(LennardJones(**ARGON), dt=2.0).run(separate, n_steps=30)
    # Same arithmetic; only the neighbour lists' pair order (rebuilt at different moments) may differ.
    torch.testing.assert_close(fused_batch.positions, separate.positions, rtol=0, atol=1e-12)
    torch.testing.assert_close(fused_batch.velocities, separate.velocities, rtol=0, atol=1e-13)
    assert fused_batch.status.tolist() == [2, 2, 2, 2]


def test_systems_migrate_at_different_steps_and_finish():
    migrations: dict[int, int] = {}

    class Watch:
        stage, frequency = DynamicsStage.ON_CONVERGE, 1

        def __call__(self, ctx, stage):
            for system in ctx.batch.system_id[ctx.converged_mask].tolist():
                migrations[system] = ctx.step_count

    model = LennardJones(**ARGON)
    fused = FIRE(model, hooks=[Watch()], convergence_hook=ConvergenceHook.from_fmax(0.01), n_steps=500) + NVE(
        model, dt=2.0, n_steps=10
    )
    batch = Batch.from_atoms(_systems(), device="cpu")
    fused.run(batch)
    assert sorted(migrations) == [0, 1, 2, 3] and len(set(migrations.values())) >= 3
    assert fused.step_count == max(migrations.values()) + 1 + 10  # the last one's 10 MD steps
    assert fused.done and batch.status.tolist() == [2] * 4


def test_a_relaxation_out_of_budget_moves_on_flagged():
    model = LennardJones(**ARGON)
    relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(1e-6), n_steps=5)
    fused = relax + NVE(model, dt=2.0, n_steps=3)
    batch = Batch.from_atoms(_systems()[1:3], device="cpu")
    fused.run(batch)
    assert fused.step_count == 5 + 3
    assert batch.unconverged.tolist() == [True, True] and batch.status.tolist() == [2, 2]


def test_no_cross_talk_between_sub_stage_states():
    model = LennardJones(**ARGON)
    batch = Batch.from_atoms(_systems(), device="cpu")
    batch.status = torch.tensor([0, 1, 0, 1])
    start = batch.clone()
    fused = FIRE(model, n_steps=100) + NVE(model, dt=2.0, n_steps=100)
    fused.run(batch, n_steps=6)
    in_md = torch.tensor([False, True, False, True])
    assert (batch.fire_dt[in_md] == 0.1).all() and (
        batch.fire_n[in_md] == -1
    ).all()  # FIRE never touched them
    assert (batch.fire_velocities[in_md[batch.batch_idx]] == 0).all()
    in_fire_atoms = ~in_md[batch.batch_idx]
    assert torch.equal(
        batch.velocities[in_fire_atoms], start.velocities[in_fire_atoms]
    )  # MD never touched these
    alone = start.index_select([0, 2])
    FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-9)).run(alone, n_steps=6)
    torch.testing.assert_close(batch.positions[in_fire_atoms], alone.positions, rtol=0, atol=1e-13)


def test_entering_md_draws_velocities_at_its_temperature():
    model = LennardJones(**ARGON)
    systems = [argon_bulk(2, seed=k, rattle=0.02) for k in range(6)]
    batch = Batch.from_atoms(systems, device="cpu")
    md = NVE(model, dt=2.0, n_steps=1, initial_temperature=300.0, velocity_seed=4)
    (FIRE(model, n_steps=1) + md).run(batch, n_steps=1)  # one relax step, then all enter MD
    assert batch.status.tolist() == [1] * 6
    ke = kinetic_energy(batch.velocities, batch.masses, batch.batch_idx, batch.num_graphs)
    temperature = (2 * ke / (3 * 32 * 8.617330337217213e-05)).mean().item()
    assert temperature == pytest.approx(300.0, rel=0.2)  # 6 x 32 atoms: a few percent of scatter
    momentum = torch.zeros(6, 3, dtype=torch.float64).index_add_(
        0, batch.batch_idx, batch.velocities * batch.masses[:, None]
    )
    torch.testing.assert_close(momentum, torch.zeros_like(momentum), rtol=0, atol=1e-12)


def test_the_fused_stage_own_hooks_run_the_neighbour_list():
    model = LennardJones(**ARGON)
    hook = NeighborListHook(8.5, skin=1.0)
    fused = FusedStage([FIRE(model, n_steps=20), NVE(model, dt=2.0, n_steps=20)], hooks=[hook])
    batch = Batch.from_atoms(_systems(), device="cpu")
    reference = batch.clone()
    fused.run(batch, n_steps=15)
    (FIRE(LennardJones(**ARGON), n_steps=20) + NVE(LennardJones(**ARGON), dt=2.0, n_steps=20)).run(
        reference, n_steps=15
    )
    torch.testing.assert_close(batch.positions, reference.positions, rtol=0, atol=1e-12)
    assert model.neighbor_list.rebuilds == 0  # the model used the hook's list


def test_composition_and_errors():
    model = LennardJones(**ARGON)
    a, b, c = FIRE(model), NVE(model, dt=1.0), NVE(model, dt=1.0)
    three = (a + b) + c
    assert isinstance(three, FusedStage) and three.stages == [a, b, c] and three.exit_status == 3
    assert "0:FIRE, 1:NVE, 2:NVE" in repr(three)
    with pytest.raises(TypeError, match="BaseDynamics"):
        FusedStage([a, "md"])
    with pytest.raises(ValueError, match="twice"):
        FusedStage([a, a])
    with pytest.raises(TypeError):
        a + 1


def test_a_final_stage_without_budget_runs_to_n_steps():
    model = LennardJones(**ARGON)
    fused = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(1e3)) + NVE(model, dt=1.0)
    batch = Batch.from_atoms(_systems()[:1], device="cpu")
    fused.run(batch, n_steps=12)
    assert fused.step_count == 12 and batch.status.tolist() == [1] and not fused.done
    assert np.isfinite(batch.positions.numpy()).all()


def test_a_sub_stage_without_systems_does_no_update_work():
    model = LennardJones(**ARGON)
    relax = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(0.05), n_steps=300)
    md = NVE(model, dt=1.0, n_steps=5)
    calls = {"relax": 0, "md": 0}
    for name, engine in (("relax", relax), ("md", md)):
        original = engine.masked_pre_update

        def counting(batch, members, name=name, original=original):
            calls[name] += 1
            original(batch, members)

        engine.masked_pre_update = counting
    fused = relax + md
    batch = Batch.from_atoms([argon_bulk(1, seed=0, rattle=0.05)], device="cpu")
    fused.run(batch)
    steps = fused.step_count
    assert fused.done and steps > 5
    assert calls["relax"] == steps - 5  # not called once the system left it
    assert calls["md"] == 5 + 1  # the first step assumes every sub-stage busy


def test_masked_kernels_find_their_recorded_launches_again(monkeypatch):
    """Step after step the masks live in the same memory, so no kernel re-packs its launch
    (a new mask each step cost every masked kernel a re-recorded launch)."""
    from nvalchemi_ase.ops import warp_launch

    model = LennardJones(**ARGON)
    engine = FIRE(model, convergence_hook=ConvergenceHook.from_fmax(1e-12)) + NVE(model, dt=0.5)
    batch = engine.prime(Batch.from_atoms([argon_bulk(1, seed=k, rattle=0.002) for k in range(4)]))
    batch.status = torch.tensor([0, 1, 0, 1])  # both sub-stages busy
    for _ in range(12):  # warm: the outputs' pools and the launch records settle
        engine.step(batch)
    rebuilds = model.neighbor_list.rebuilds
    recorded = []
    original = warp_launch._direct
    monkeypatch.setattr(warp_launch, "_direct", lambda command: recorded.append(command) or original(command))
    for _ in range(20):
        engine.step(batch)
    assert model.neighbor_list.rebuilds == rebuilds  # nothing moved past the skin: no new pairs
    assert (batch.status == torch.tensor([0, 1, 0, 1])).all()  # still in both sub-stages
    assert [command.kernel.key for command in recorded] == []
