"""The stage loop: stage order, frequency gating, registration, priming, convergence bookkeeping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, NVE, BaseDynamics, ConvergenceHook, Criterion, DynamicsStage
from nvalchemi_ase.hooks import Hook, HookContext
from nvalchemi_ase.models import LennardJones
from tests.dynamics.recording import RecordingHook
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
STEP_STAGES = [s for s in DynamicsStage if s is not DynamicsStage.ON_CONVERGE]


def _batch(count: int = 2, rattle: float = 0.1) -> Batch:
    return Batch.from_atoms([argon_bulk(1, seed=k, rattle=rattle) for k in range(count)], device="cpu")


def test_stage_values_are_the_specs():
    assert [s.value for s in DynamicsStage] == list(range(9))
    assert [s.name for s in DynamicsStage] == [
        "BEFORE_STEP",
        "BEFORE_PRE_UPDATE",
        "AFTER_PRE_UPDATE",
        "BEFORE_COMPUTE",
        "AFTER_COMPUTE",
        "BEFORE_POST_UPDATE",
        "AFTER_POST_UPDATE",
        "AFTER_STEP",
        "ON_CONVERGE",
    ]


def test_every_stage_fires_in_order_after_the_priming_compute():
    hook = RecordingHook()
    NVE(LennardJones(**ARGON), dt=1.0, hooks=[hook]).run(_batch(), n_steps=2)
    priming = [(0, DynamicsStage.BEFORE_COMPUTE), (0, DynamicsStage.AFTER_COMPUTE)]
    steps = [(n, s) for n in range(2) for s in STEP_STAGES]
    assert hook.calls == priming + steps


def test_all_nine_stages_fire_when_a_system_converges():
    hook = RecordingHook()
    relax = FIRE(LennardJones(**ARGON), hooks=[hook], convergence_hook=ConvergenceHook.from_fmax(1e3))
    relax.run(_batch(), n_steps=5)
    stages_of_step_0 = [s for n, s in hook.calls[2:] if n == 0]
    assert stages_of_step_0 == list(DynamicsStage)  # all nine, in value order
    assert relax.step_count == 1 and relax.done


def test_frequency_gates_by_step_count():
    every_third = RecordingHook(stages=[DynamicsStage.AFTER_STEP], frequency=3)
    NVE(LennardJones(**ARGON), dt=1.0, hooks=[every_third]).run(_batch(), n_steps=7)
    assert [n for n, _ in every_third.calls] == [0, 3, 6]


def test_hooks_of_one_stage_fire_in_registration_order():
    order: list[str] = []

    class Named:
        stage = DynamicsStage.AFTER_COMPUTE
        frequency = 1

        def __init__(self, name):
            self.name = name

        def __call__(self, ctx, stage):
            order.append(self.name)

    hooks = [Named("a"), Named("b"), Named("c")]
    NVE(LennardJones(**ARGON), dt=1.0, hooks=hooks).run(_batch(), n_steps=1)
    assert order == ["a", "b", "c"] * 2  # priming compute, then step 0


def test_registration_validates_hooks():
    engine = NVE(LennardJones(**ARGON), dt=1.0)
    bad_frequency = RecordingHook(stages=[DynamicsStage.AFTER_STEP], frequency=0)
    with pytest.raises(ValueError, match="frequency must be an integer >= 1"):
        engine.register_hook(bad_frequency)

    class NoStage:
        stage = None
        frequency = 1

        def __call__(self, ctx, stage):
            pass

    with pytest.raises(TypeError, match="has no stage"):
        engine.register_hook(NoStage())

    class WrongKind:
        stage = "after_step"
        frequency = 1

        def __call__(self, ctx, stage):
            pass

    with pytest.raises(TypeError, match="only accepts DynamicsStage"):
        engine.register_hook(WrongKind())
    with pytest.raises(TypeError, match="is not a hook"):
        engine.register_hook(object())
    engine.register_hook(NoStage(), stage=DynamicsStage.BEFORE_STEP)  # a stage given at registration
    assert isinstance(engine.hooks[0], Hook) and len(engine.hooks_at(DynamicsStage.BEFORE_STEP)) == 1


def test_context_carries_the_batch_engine_and_step():
    seen: list[HookContext] = []

    class Peek:
        stage = DynamicsStage.AFTER_STEP
        frequency = 1

        def __call__(self, ctx, stage):
            seen.append(ctx)

    batch = _batch()
    engine = NVE(LennardJones(**ARGON), dt=1.0, hooks=[Peek()])
    engine.run(batch, n_steps=2)
    assert [c.step_count for c in seen] == [0, 1]
    assert all(c.batch is batch and c.dynamics is engine and c.workflow is engine for c in seen)
    assert all(c.model is engine.model and c.converged_mask is None for c in seen)


def test_forces_are_primed_once_and_step_count_accumulates():
    batch = _batch()
    engine = NVE(LennardJones(**ARGON), dt=1.0, n_steps=3)
    assert batch.forces is None
    engine.run(batch)
    engine.run(batch, n_steps=4)
    assert engine.step_count == 7
    reference = LennardJones(**ARGON)(batch)["forces"]
    torch.testing.assert_close(batch.forces, reference, rtol=1e-12, atol=1e-14)


def test_run_needs_a_step_count_and_a_batch():
    engine = NVE(LennardJones(**ARGON), dt=1.0)
    with pytest.raises(ValueError, match="no step count"):
        engine.run(_batch())
    with pytest.raises(ValueError, match="no batch"):
        engine.step()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dt": 0.0}, ValueError, "dt must be positive"),
        ({"dt": 1.0, "n_steps": -1}, ValueError, "n_steps"),
        ({"dt": 1.0, "convergence_hook": 0.05}, TypeError, "convergence_hook"),
    ],
)
def test_bad_engine_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        NVE(LennardJones(**ARGON), **kwargs)


def test_a_model_without_forces_is_refused():
    class EnergyOnly:
        cutoff = 0.0
        implemented_properties = ("energy",)

        def __call__(self, batch, properties=()):
            return {}

    with pytest.raises(TypeError, match="does not implement forces"):
        BaseDynamics(EnergyOnly())


def test_on_converge_fires_once_per_system_at_the_step_it_converges():
    systems = [argon_bulk(1, seed=k, rattle=0.05 + 0.1 * k) for k in range(4)]
    batch = Batch.from_atoms(systems, device="cpu")
    hook = RecordingHook(stages=[DynamicsStage.ON_CONVERGE])
    relax = FIRE(LennardJones(**ARGON), hooks=[hook], convergence_hook=ConvergenceHook.from_fmax(0.01))
    relax.run(batch, n_steps=300)
    converged = [system for step in hook.converged for system in step]
    assert sorted(converged) == [0, 1, 2, 3]  # each once
    assert len({n for n, _ in hook.calls}) > 1  # at different steps
    assert relax.done and relax.converged.all()


def test_converged_systems_stop_moving():
    batch = Batch.from_atoms(
        [argon_bulk(1, seed=0, rattle=0.0), argon_bulk(1, seed=1, rattle=0.2)], device="cpu"
    )
    start = batch.positions.clone()
    relax = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-3))
    relax.run(batch, n_steps=5)
    first = batch.batch_idx == 0
    assert torch.equal(batch.positions[first], start[first])  # perfect crystal: converged at the start
    assert not torch.equal(batch.positions[~first], start[~first])


def test_convergence_frequency_delays_only_the_host_check():
    batch = _batch(2, rattle=0.2)
    hook = RecordingHook(stages=[DynamicsStage.ON_CONVERGE])
    relax = FIRE(
        LennardJones(**ARGON), hooks=[hook], convergence_hook=ConvergenceHook.from_fmax(0.01, frequency=4)
    )
    relax.run(batch, n_steps=200)
    assert all(n % 4 == 0 for n, _ in hook.calls)
    assert relax.step_count % 4 == 1  # stopped right after a check step


def test_criteria_compose_and_read_batch_fields():
    batch = _batch(3, rattle=0.2)
    NVE(LennardJones(**ARGON), dt=1.0).run(batch, n_steps=0)
    fmax = ConvergenceHook.from_fmax(10.0)
    low_energy = ConvergenceHook(Criterion("energy", threshold=float(batch.energy[1, 0]) + 1e-12))
    both = fmax & low_energy
    energies = batch.energy.view(-1)
    assert both.evaluate(batch).tolist() == (energies < energies[1] + 1e-12).tolist()
    by_field = ConvergenceHook({"key": "forces", "threshold": 1e6})
    assert by_field.evaluate(batch).all()
    with pytest.raises(KeyError, match="neither a known quantity"):
        ConvergenceHook({"key": "nope"}).evaluate(batch)
    with pytest.raises(TypeError, match="Criterion or a dict"):
        ConvergenceHook([0.05])


def test_context_manager_opens_and_closes_hooks_once():
    events: list[str] = []

    class Resource:
        stage = DynamicsStage.AFTER_STEP
        frequency = 1

        def __call__(self, ctx, stage):
            events.append("call")

        def __enter__(self):
            events.append("enter")
            return self

        def __exit__(self, *exc):
            events.append("exit")

    engine = NVE(LennardJones(**ARGON), dt=1.0, hooks=[Resource()])
    with engine:
        engine.run(_batch(), n_steps=1)
        engine.run(n_steps=1)
    assert events == ["enter", "call", "call", "exit"]
    engine.run(n_steps=1)  # without the context manager, run opens and closes itself
    assert events[4:] == ["enter", "call", "exit"]


def test_repr_names_the_engine():
    text = repr(NVE(LennardJones(**ARGON), dt=2.0, n_steps=10))
    assert "NVE" in text and "n_steps=10" in text and "dt=2.0" in text


def test_no_hooks_no_syncs_needed_for_md(monkeypatch):
    batch = _batch()
    engine = NVE(LennardJones(**ARGON), dt=1.0)
    engine.run(batch, n_steps=1)
    calls = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: calls.append(1) or original(self))
    engine.run(batch, n_steps=3)
    assert calls == []
    assert np.isfinite(batch.positions.numpy()).all()


def test_prime_computes_forces_once_with_the_compute_hooks_and_again_on_request():
    hook = RecordingHook()
    engine = NVE(LennardJones(**ARGON), dt=1.0, hooks=[hook])
    batch = engine.prime(_batch())
    assert batch.forces is not None and batch is engine.batch
    engine.prime(batch)  # forces known: nothing to do
    priming = [(0, DynamicsStage.BEFORE_COMPUTE), (0, DynamicsStage.AFTER_COMPUTE)]
    assert hook.calls == priming
    batch.positions = batch.positions + 0.05
    stale = batch.forces.clone()
    engine.prime(batch, recompute=True)
    assert hook.calls == priming * 2 and not torch.equal(batch.forces, stale)


def test_set_convergence_judges_every_system_again():
    engine = FIRE(LennardJones(**ARGON), convergence_hook=ConvergenceHook.from_fmax(1e-6))
    batch = engine.prime(_batch(3))
    engine.set_convergence(100.0)  # an fmax every system passes
    assert engine.converged.tolist() == [True] * 3 and engine.all_converged()
    engine.set_convergence({"criteria": [Criterion("fmax", 1e-6)]})
    assert engine.converged.tolist() == [False] * 3 and not engine.all_converged()
    engine.run(batch, n_steps=1)
    assert engine.step_count == 1  # the systems move again
    engine.set_convergence(None)
    assert not engine.all_converged()


def test_opened_hooks_opens_once_inside_the_context_manager():
    events: list[str] = []

    class Resource:
        stage = DynamicsStage.AFTER_STEP
        frequency = 1

        def __call__(self, ctx, stage):
            events.append("call")

        def close(self):
            events.append("close")

    engine = NVE(LennardJones(**ARGON), dt=1.0, hooks=[Resource()])
    with engine.opened_hooks():
        engine.run(_batch(), n_steps=1)
    assert events == ["call", "close"]
    with engine, engine.opened_hooks():
        engine.run(n_steps=1)
    assert events[2:] == ["call", "close"]
