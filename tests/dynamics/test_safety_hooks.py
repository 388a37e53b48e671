"""Safety hooks: NaN/Inf detection names the fields and systems; force clamping by hand."""

from __future__ import annotations

import logging
import re

import pytest
import torch

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import DemoDynamics, DynamicsStage
from nvalchemi_ase.dynamics.hooks import MaxForceClampHook, NaNDetectorHook
from nvalchemi_ase.hooks import HookContext, safety
from nvalchemi_ase.hooks.safety import NonFiniteError, clamp_forces, might_clamp
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def _computed(n_systems: int = 3) -> Batch:
    batch = Batch.from_atoms([argon_bulk(1, seed=k) for k in range(n_systems)], device="cpu")  # 4 atoms each
    dynamics = DemoDynamics(LennardJones(**ARGON), dt=1.0)
    dynamics.request_property("stress")
    dynamics.run(batch, n_steps=0)
    return batch


def _fire(hook, batch, step=0):
    hook(HookContext(batch, None, step, DynamicsStage.AFTER_COMPUTE), DynamicsStage.AFTER_COMPUTE)


# ---------------------------------------------------------------------------------------------- NaN detector
@pytest.fixture(params=["numpy", "torch"])
def reduction(request, monkeypatch):
    """Each detector test twice: numpy's reductions read at once (a CPU's float tensors), and torch's
    sums with the flags kept for a later firing (CUDA's path, and a CPU's other dtypes)."""
    if request.param == "torch":
        monkeypatch.setattr(safety, "_cpu_arrays", lambda tensors: None)
    return request.param


def test_finite_batch_passes_and_missing_keys_are_skipped(reduction):
    batch = _computed()
    _fire(NaNDetectorHook(extra_keys=["stress", "charges", "velocities"]), batch)
    batch.stress = None
    _fire(NaNDetectorHook(extra_keys=["stress"]), batch)


def test_message_names_step_fields_counts_and_systems(reduction):
    batch = _computed()
    forces, energy, stress = batch.forces.clone(), batch.energy.clone(), batch.stress.clone()
    forces[9, 1] = float("nan")  # system 2 (atoms 8..11)
    forces[10, :] = float("inf")  # system 2 again: listed once
    forces[1, 0] = -float("inf")  # system 0
    energy[1, 0] = float("inf")
    stress[2, 0, 1] = -float("inf")
    batch.forces, batch.energy, batch.stress = forces, energy, stress
    with pytest.raises(NonFiniteError) as error:
        _fire(NaNDetectorHook(extra_keys=["stress"]), batch, step=12)
    lines = str(error.value).splitlines()
    assert lines[0] == "non-finite values at step 12 in field(s) ['forces', 'energy', 'stress']"
    assert re.fullmatch(r"  forces: 5 non-finite element\(s\) in system\(s\) \[0, 2\] .*", lines[1])
    assert re.fullmatch(r"  energy: 1 non-finite element\(s\) in system\(s\) \[1\] .*", lines[2])
    assert re.fullmatch(r"  stress: 1 non-finite element\(s\) in system\(s\) \[2\] .*", lines[3])
    assert isinstance(error.value, RuntimeError)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_each_kind_of_non_finite_value_is_caught(bad, reduction):
    batch = _computed()
    positions = batch.positions.clone()
    positions[5, 2] = bad
    batch.positions = positions
    _fire(NaNDetectorHook(), batch)  # positions are not checked unless asked
    with pytest.raises(
        NonFiniteError, match=r"\['positions'\]\n  positions: 1 non-finite element\(s\) in system\(s\) \[1\]"
    ):
        _fire(NaNDetectorHook(extra_keys=["positions"]), batch)


def test_detector_in_a_run_stops_at_the_poisoned_step_and_requests_stress(reduction):
    class Poison:
        stage, frequency = DynamicsStage.AFTER_COMPUTE, 1

        def __call__(self, ctx, stage):
            if ctx.step_count == 3:
                forces = ctx.batch.forces.clone()
                forces[ctx.batch.ptr[1]] = float("nan")  # first atom of system 1
                ctx.batch.forces = forces

    detector = NaNDetectorHook(extra_keys=["stress"])
    dynamics = DemoDynamics(LennardJones(**ARGON), dt=1.0, n_steps=10, hooks=[Poison(), detector])
    assert "stress" in dynamics.properties
    batch = Batch.from_atoms([argon_bulk(1, seed=0), argon_bulk(1, seed=1)], device="cpu")
    with pytest.raises(NonFiniteError, match=r"at step 3 in field\(s\) \['forces'\]\n  forces: 3 .* \[1\]"):
        dynamics.run(batch)
    assert batch.stress is not None and dynamics.step_count == 3


def test_finite_values_whose_sum_overflows_pass(reduction):
    batch = _computed()
    forces = batch.forces.clone()
    forces[0, 0], forces[1, 0] = 1e308, 1e308  # finite, but their sum is +inf
    batch.forces = forces
    _fire(NaNDetectorHook(), batch)  # the exact check clears it


def test_clamp_leaves_rows_with_nan_as_they_are():
    forces = torch.tensor([[float("nan"), 1.0, 2.0], [30.0, 40.0, 0.0]], dtype=torch.float64)
    clamped, over = clamp_forces(forces, 5.0)
    assert torch.equal(clamped[0, 1:], forces[0, 1:]) and clamped[0, 0].isnan()
    assert clamped[1].tolist() == [3.0, 4.0, 0.0] and over.tolist() == [False, True]


def test_detector_constructor_errors():
    with pytest.raises(TypeError, match="extra_keys"):
        NaNDetectorHook(extra_keys="stress")
    with pytest.raises(ValueError, match="frequency"):
        NaNDetectorHook(frequency=0)


# ---------------------------------------------------------------------------------------------- clamp
def test_clamp_values_by_hand():
    forces = torch.tensor(
        [[3.0, 4.0, 0.0], [0.0, 0.0, 2.5], [0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [-6.0, 0.0, 8.0]],
        dtype=torch.float64,
    )
    clamped, over = clamp_forces(forces, 2.5)
    expected = torch.tensor(
        [[1.5, 2.0, 0.0], [0.0, 0.0, 2.5], [0.0, 0.0, 0.0], [1.0, -1.0, 0.5], [-1.5, 0.0, 2.0]],
        dtype=torch.float64,
    )
    torch.testing.assert_close(clamped, expected, rtol=1e-15, atol=0)
    assert torch.equal(clamped[1:4], forces[1:4])  # at the threshold, zero and small: bit-for-bit
    assert over.tolist() == [True, False, False, False, True]


def test_clamp_hook_counts_per_system_and_logs(caplog):
    batch = _computed(2)
    forces = torch.zeros_like(batch.forces)
    forces[0] = torch.tensor([30.0, 40.0, 0.0], dtype=batch.dtype)  # system 0
    forces[5] = torch.tensor([0.0, 0.0, -70.0], dtype=batch.dtype)  # system 1
    forces[6] = torch.tensor([0.0, 60.0, 0.0], dtype=batch.dtype)  # system 1
    forces[7] = torch.tensor([0.0, 50.0, 0.0], dtype=batch.dtype)  # exactly at the limit
    batch.forces = forces
    hook = MaxForceClampHook(max_force=50.0, log_clamps=True)
    with caplog.at_level(logging.WARNING, logger="nvalchemi_ase.clamp"):
        _fire(hook, batch, step=4)
        _fire(hook, batch, step=5)  # already clamped: nothing more to clamp, nothing logged
    torch.testing.assert_close(batch.forces[0], torch.tensor([30.0, 40.0, 0.0], dtype=batch.dtype))
    torch.testing.assert_close(batch.forces[5], torch.tensor([0.0, 0.0, -50.0], dtype=batch.dtype))
    torch.testing.assert_close(batch.forces[6], torch.tensor([0.0, 50.0, 0.0], dtype=batch.dtype))
    assert batch.forces.norm(dim=1).max() <= 50.0 + 1e-12
    assert hook.clamped.tolist() == [0, 2] and hook.clamped.dtype == torch.long
    records = [r for r in caplog.records if r.name == "nvalchemi_ase.clamp"]
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert records[0].getMessage() == "step 4: clamped 2 atom(s): system 1: 2"


def test_clamp_without_logging_logs_nothing(caplog):
    batch = _computed(2)
    batch.forces = batch.forces * 1e4
    hook = MaxForceClampHook(max_force=1.0)
    with caplog.at_level(logging.DEBUG, logger="nvalchemi_ase.clamp"):
        _fire(hook, batch)
    assert caplog.records == []
    assert int(hook.clamped.sum()) == int((batch.forces.norm(dim=1) > 1.0 - 1e-12).sum()) > 0


def test_clamp_applies_before_the_velocity_update_in_a_run():
    seen = []

    class After:
        stage, frequency = DynamicsStage.AFTER_COMPUTE, 1

        def __call__(self, ctx, stage):
            seen.append(float(ctx.batch.forces.norm(dim=1).max()))

    compressed = argon_bulk(1, seed=0, rattle=0.0)
    compressed.set_cell(compressed.cell * 0.8, scale_atoms=True)
    compressed.rattle(0.3, seed=1)
    batch = Batch.from_atoms([compressed], device="cpu")
    hooks = [MaxForceClampHook(max_force=0.5), NaNDetectorHook(), After()]
    DemoDynamics(LennardJones(**ARGON), dt=1.0, n_steps=3, hooks=hooks).run(batch)
    assert len(seen) == 4 and max(seen) <= 0.5 + 1e-12  # the priming compute and 3 steps, all clamped


def test_the_cpu_bound_never_skips_a_row_over_the_limit():
    # rows of every length around the limit and every direction, some exactly on the bound's edge
    generator = torch.Generator().manual_seed(0)
    directions = torch.randn(20000, 3, dtype=torch.float64, generator=generator)
    directions /= directions.norm(dim=1, keepdim=True)
    lengths = 50.0 * torch.linspace(0.5, 1.8, 20000, dtype=torch.float64)
    rows = torch.cat([directions * lengths[:, None], torch.full((1, 3), 50.0 / 1.7321, dtype=torch.float64)])
    for row in rows.split(1):
        clamped, over = clamp_forces(row, 50.0)
        if not might_clamp(row, 50.0):  # skipped: the clamp would have left it as it is
            assert not over.any() and torch.equal(clamped, row)
    assert not might_clamp(rows[-1:], 50.0)  # all components at the bound: |F| = 49.9991
    assert might_clamp(torch.tensor([[40.0, 40.0, 0.0]], dtype=torch.float64), 50.0)  # |F| = 56.6
    assert might_clamp(torch.tensor([[float("nan"), 0.0, 0.0]], dtype=torch.float64), 50.0)
    assert might_clamp(torch.tensor([[-40.0, 0.0, -40.0]], dtype=torch.float32), 50.0)  # through the minimum
    assert might_clamp(torch.zeros(1, 3, dtype=torch.float16), 50.0)  # no numpy view: always the clamp
    assert not might_clamp(torch.zeros(0, 3, dtype=torch.float64), 50.0)


def test_clamp_with_nothing_over_keeps_the_forces_tensor_and_counts_zero():
    batch = _computed(2)
    before = batch.forces
    hook = MaxForceClampHook(max_force=50.0)
    _fire(hook, batch)
    assert batch.forces is before and hook.clamped.tolist() == [0, 0]
    # a batch of another layout with nothing to clamp: counts start again for it
    forces = batch.forces.clone()
    forces[0] = torch.tensor([0.0, 0.0, 80.0], dtype=batch.dtype)
    batch.forces = forces
    _fire(hook, batch)
    assert hook.clamped.tolist() == [1, 0]
    bigger = _computed(3)
    _fire(hook, bigger)
    assert hook.clamped.tolist() == [0, 0, 0]


def test_clamp_constructor_errors():
    for bad in (0.0, -1.0, float("inf"), float("nan"), True):
        with pytest.raises(ValueError, match="max_force"):
            MaxForceClampHook(max_force=bad)
    with pytest.raises(ValueError, match="frequency"):
        MaxForceClampHook(1.0, frequency=-2)


# ---------------------------------------------------------------------------------------- the model's bound
class _Spy:
    """Counts the firings that read the forces themselves (no bound from the model to go by)."""

    def __init__(self, monkeypatch) -> None:
        self.clamp_reads, self.check_reads = [], []
        cpu_arrays, bound_by_components = safety._cpu_arrays, safety.might_clamp

        def counted_arrays(tensors):
            if len(tensors) > 1:  # the detector's forces and energy (might_clamp reads the forces alone)
                self.check_reads.append(tensors[0])
            return cpu_arrays(tensors)

        def counted_bound(forces, max_force):
            self.clamp_reads.append(forces)
            return bound_by_components(forces, max_force)

        monkeypatch.setattr(safety, "_cpu_arrays", counted_arrays)
        monkeypatch.setattr(safety, "might_clamp", counted_bound)


def _squeezed(seed: int):
    atoms = argon_bulk(1, seed=seed, rattle=0.0)
    atoms.set_cell(atoms.cell * 0.8, scale_atoms=True)
    atoms.rattle(0.3, seed=seed + 1)
    return atoms


def test_with_the_models_bound_the_hooks_clamp_and_check_without_reading_the_forces(monkeypatch):
    spy = _Spy(monkeypatch)
    seen = []

    class After:
        stage, frequency = DynamicsStage.AFTER_COMPUTE, 1

        def __call__(self, ctx, stage):
            seen.append(ctx.batch.forces.norm(dim=1).max().item())

    clamp = MaxForceClampHook(max_force=0.5)
    batch = Batch.from_atoms([_squeezed(0), argon_bulk(1, seed=3)], device="cpu")  # one to clamp, one not
    hooks = [clamp, NaNDetectorHook(), After()]
    dynamics = DemoDynamics(LennardJones(**ARGON), dt=1.0, n_steps=3, hooks=hooks)
    assert safety.FORCES_BOUND in dynamics.properties
    dynamics.run(batch)
    assert spy.clamp_reads == []  # the clamp went by the model's bound at every firing
    assert len(seen) == 4 and max(seen) <= 0.5 + 1e-12  # the priming compute and 3 steps, all clamped
    assert clamp.clamped[0] > 0 and clamp.clamped[1] == 0
    # the forces the clamp made are not the model's: the detector read those, at each firing
    assert len(spy.check_reads) == 4


def test_with_the_models_bound_a_non_finite_system_stops_the_run_at_its_step(monkeypatch):
    spy = _Spy(monkeypatch)

    class Poison:  # system 1's first atom at NaN before the model runs at step 2: its results are NaN
        stage, frequency = DynamicsStage.BEFORE_COMPUTE, 1

        def __call__(self, ctx, stage):
            if ctx.step_count == 2:
                positions = ctx.batch.positions.clone()
                positions[ctx.batch.ptr[1]] = float("nan")
                ctx.batch.positions = positions

    batch = Batch.from_atoms([argon_bulk(1, seed=0), argon_bulk(1, seed=1)], device="cpu")
    dynamics = DemoDynamics(LennardJones(**ARGON), dt=1.0, n_steps=5, hooks=[Poison(), NaNDetectorHook()])
    stopped = r"at step 2 in field\(s\) \['forces', 'energy'\]\n  forces: .* \[1\]"
    with pytest.raises(NonFiniteError, match=stopped):
        dynamics.run(batch)
    assert spy.clamp_reads == [] and spy.check_reads == []


def test_forces_written_in_place_after_the_model_are_read_again(monkeypatch):
    spy = _Spy(monkeypatch)

    class Scribble:  # a NaN written into the model's forces: the model's bound no longer holds
        stage, frequency = DynamicsStage.AFTER_COMPUTE, 1

        def __call__(self, ctx, stage):
            if ctx.step_count == 2:
                ctx.batch.forces[ctx.batch.ptr[1], 0] = float("nan")

    batch = Batch.from_atoms([argon_bulk(1, seed=0), argon_bulk(1, seed=1)], device="cpu")
    hooks = [Scribble(), MaxForceClampHook(max_force=50.0), NaNDetectorHook()]
    dynamics = DemoDynamics(LennardJones(**ARGON), dt=1.0, n_steps=5, hooks=hooks)
    with pytest.raises(NonFiniteError, match=r"at step 2 in field\(s\) \['forces'\]\n  forces: 1 .* \[1\]"):
        dynamics.run(batch)
    # the clamp's bound and the detector's check, at step 2 only
    assert len(spy.clamp_reads) == 1 and len(spy.check_reads) == 1, (spy.clamp_reads, spy.check_reads)
