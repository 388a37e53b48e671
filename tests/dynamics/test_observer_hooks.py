"""Observer hooks: logging (values parsed back and checked against ASE), snapshots, drift, profiler."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.constraints import FixAtoms
from ase.md.velocitydistribution import thermalize_momenta

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import FIRE, DemoDynamics, DynamicsStage
from nvalchemi_ase.dynamics.hooks import (
    ConvergedSnapshotHook,
    EnergyDriftError,
    EnergyDriftMonitorHook,
    EnergyDriftWarning,
    FreezeAtomsHook,
    LoggingHook,
    ProfilerHook,
    SnapshotHook,
)
from nvalchemi_ase.hooks import HookContext
from tests.structures import argon_bulk
from tests.tolerances import FLOAT64_RTOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def _model() -> LennardJones:
    return LennardJones(**ARGON)


def _batch(frozen: bool = False) -> Batch:
    systems = [argon_bulk(2, seed=1), argon_bulk(2, seed=2, rattle=0.2)]
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=60.0 + 40.0 * k, rng=np.random.default_rng(k))
    if frozen:
        systems[1].set_constraint(FixAtoms(indices=[0, 5, 9]))
    return Batch.from_atoms(systems, device="cpu")


class Recorder:
    """An AFTER_STEP hook keeping ``batch.to_atoms()`` at every step."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self) -> None:
        self.atoms: dict[int, list] = {}

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        self.atoms[ctx.step_count] = ctx.batch.to_atoms()


class RecordingSink:
    """The smallest sink: keeps (system ids, a copy of the selected systems) per write."""

    def __init__(self) -> None:
        self.writes: list[Batch] = []

    def write(self, batch: Batch, mask: torch.Tensor | None = None) -> None:
        self.writes.append(batch.clone() if mask is None else batch.index_select(mask).clone())


def _ase_energy(atoms) -> float:
    copy = atoms.copy()
    copy.calc = AseLennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)
    return copy.get_potential_energy()


# ---------------------------------------------------------------------------------------------- logging
def test_csv_rows_equal_values_computed_by_ase(tmp_path):
    path = tmp_path / "md.csv"
    scalars = {
        "atoms": lambda ctx: (ctx.batch.ptr[1:] - ctx.batch.ptr[:-1]).double(),
        "const": lambda ctx: 1.5,
    }
    recorder = Recorder()
    hooks = [FreezeAtomsHook(), LoggingHook(frequency=3, log_path=path, custom_scalars=scalars), recorder]
    DemoDynamics(_model(), dt=2.0, n_steps=7, hooks=hooks).run(_batch(frozen=True))
    with open(path) as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["step", "system", "status", "energy", "fmax", "temperature", "atoms", "const"]
    assert [int(r["step"]) for r in rows] == [0, 0, 3, 3, 6, 6]
    assert [int(r["system"]) for r in rows] == [0, 1] * 3
    for row in rows:
        atoms = recorder.atoms[int(row["step"])][int(row["system"])]
        assert int(row["status"]) == 0
        assert float(row["energy"]) == pytest.approx(_ase_energy(atoms), rel=FLOAT64_RTOL)
        assert float(row["fmax"]) == pytest.approx(
            np.linalg.norm(atoms.get_forces(), axis=1).max(), rel=1e-12
        )
        assert float(row["temperature"]) == pytest.approx(atoms.get_temperature(), rel=1e-12)
        assert float(row["atoms"]) == len(atoms) and float(row["const"]) == 1.5
    frozen_system = recorder.atoms[6][1]
    assert frozen_system.constraints and float(rows[-1]["temperature"]) > 0  # ndof = 3 × (32 − 3)


def test_temperature_counts_only_moving_atoms_and_is_zero_without_any():
    batch = _batch()
    batch.atom_categories = torch.full_like(batch.atom_categories, -1) * (batch.batch_idx == 0)
    rows = LoggingHook(backend="custom", writer_fn=lambda *_: None).rows(
        HookContext(batch=batch, dynamics=None, step_count=0, stage=DynamicsStage.AFTER_STEP)
    )
    atoms = batch.to_atoms()[1]
    assert rows[0]["temperature"] == 0.0  # every atom of system 0 is frozen: no degrees of freedom
    assert rows[1]["temperature"] == pytest.approx(atoms.get_temperature(), rel=1e-12)
    assert math.isnan(rows[0]["energy"]) and math.isnan(rows[1]["fmax"])  # nothing computed yet


def test_text_log_is_aligned_and_goes_to_stdout(capsys):
    hook = LoggingHook(frequency=2, backend="text", log_path="-")
    DemoDynamics(_model(), dt=2.0, n_steps=4, hooks=[hook]).run(_batch())
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Step", "System", "Status", "Epot[eV]", "Fmax[eV/Å]", "T[K]"]
    assert len(lines) == 1 + 2 * 2 and len({len(line) for line in lines}) == 1
    assert [int(line.split()[0]) for line in lines[1:]] == [0, 0, 2, 2]


def test_text_log_file_matches_csv(tmp_path):
    text, table = tmp_path / "md.log", tmp_path / "md.csv"
    hooks = [LoggingHook(backend="text", log_path=text), LoggingHook(backend="csv", log_path=table)]
    DemoDynamics(_model(), dt=2.0, n_steps=3, hooks=hooks).run(_batch())
    with open(table) as handle:
        rows = list(csv.DictReader(handle))
    lines = text.read_text().splitlines()[1:]
    assert len(lines) == len(rows) == 6
    for line, row in zip(lines, rows, strict=True):
        step, system, _, energy, _, temp = line.split()
        assert (int(step), int(system)) == (int(row["step"]), int(row["system"]))
        assert float(energy) == pytest.approx(float(row["energy"]), abs=1e-6)
        assert float(temp) == pytest.approx(float(row["temperature"]), abs=5e-3)


def test_custom_writer_gets_one_dict_per_system():
    calls = []
    hook = LoggingHook(frequency=2, backend="custom", writer_fn=lambda step, rows: calls.append((step, rows)))
    batch = _batch()
    DemoDynamics(_model(), dt=2.0, n_steps=5, hooks=[hook]).run(batch)
    assert [step for step, _ in calls] == [0, 2, 4]
    last = calls[-1][1]
    assert [row["system"] for row in last] == [0, 1]
    energy = batch.energy.reshape(-1).tolist()  # no step after step 4: the batch still holds its values
    assert [row["energy"] for row in last] == energy
    assert all(isinstance(row["step"], int) and isinstance(row["status"], int) for row in last)


def test_csv_is_flushed_per_write_reopened_in_append_mode_and_closes_twice(tmp_path):
    path = tmp_path / "md.csv"
    hook = LoggingHook(log_path=path)
    dynamics = DemoDynamics(_model(), dt=2.0, n_steps=2, hooks=[hook])
    batch = _batch()
    dynamics.run(batch, n_steps=0)  # computes forces only
    dynamics.step(batch)  # step() does not close hooks: the row must already be on disk
    assert len(path.read_text().splitlines()) == 1 + 2
    hook.close()
    hook.close()
    dynamics.run(batch)  # steps 1 and 2, appended without a second header
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 3 * 2 and lines.count(lines[0]) == 1
    assert hook._file is None  # run() closed it


def test_logging_constructor_errors(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        LoggingHook(backend="tensorboard", log_path=tmp_path / "x")
    with pytest.raises(ValueError, match="log_path"):
        LoggingHook(backend="csv")
    with pytest.raises(ValueError, match="writer_fn"):
        LoggingHook(backend="custom")
    with pytest.raises(ValueError, match="frequency"):
        LoggingHook(frequency=0, log_path=tmp_path / "x")
    with pytest.raises(ValueError, match="custom_scalars"):
        LoggingHook(log_path=tmp_path / "x", custom_scalars={"energy": lambda ctx: 0.0})
    with pytest.raises(ValueError, match="log_path"):
        LoggingHook(log_path=tmp_path / "missing" / "x.csv")


def test_custom_scalar_of_wrong_shape_is_named():
    hook = LoggingHook(
        backend="custom", writer_fn=lambda *_: None, custom_scalars={"bad": lambda ctx: torch.ones(5)}
    )
    ctx = HookContext(batch=_batch(), dynamics=None, step_count=0, stage=DynamicsStage.AFTER_STEP)
    with pytest.raises(ValueError, match="'bad'"):
        hook.rows(ctx)


# ---------------------------------------------------------------------------------------------- snapshots
def test_snapshot_hook_writes_every_frequency_steps():
    sink, recorder = RecordingSink(), Recorder()
    DemoDynamics(_model(), dt=2.0, n_steps=10, hooks=[SnapshotHook(sink, frequency=3), recorder]).run(
        _batch()
    )
    assert len(sink.writes) == 4  # steps 0, 3, 6, 9
    for written, step in zip(sink.writes, (0, 3, 6, 9), strict=True):
        for system, atoms in enumerate(recorder.atoms[step]):
            np.testing.assert_array_equal(written.to_atoms()[system].positions, atoms.positions)


def test_converged_snapshot_writes_each_system_once_at_its_step():
    systems = [
        argon_bulk(2, seed=3, rattle=0.02),
        argon_bulk(2, seed=4, rattle=0.15),
        argon_bulk(2, seed=5, rattle=0.35),
    ]
    batch = Batch.from_atoms(systems, device="cpu")
    sink, steps = RecordingSink(), []

    class StepOf:
        stage, frequency = DynamicsStage.ON_CONVERGE, 1

        def __call__(self, ctx, stage):
            steps.extend([ctx.step_count] * int(ctx.converged_mask.sum()))

    dynamics = FIRE(_model(), n_steps=500, hooks=[ConvergedSnapshotHook(sink), StepOf()])
    dynamics.run(batch)
    written = torch.cat([w.system_id for w in sink.writes]).tolist()
    assert sorted(written) == [0, 1, 2] and len(set(steps)) >= 2  # each once, at different steps
    for snapshot in sink.writes:
        for k, system in enumerate(snapshot.system_id.tolist()):
            final = batch.index_select([system])
            assert torch.equal(snapshot.index_select([k]).positions, final.positions)  # held once converged
            assert float(snapshot.index_select([k]).forces.norm(dim=1).max()) < 0.05


def test_converged_snapshot_ignores_empty_masks():
    sink, batch = RecordingSink(), _batch()
    hook = ConvergedSnapshotHook(sink)
    for mask in (None, torch.zeros(2, dtype=torch.bool)):
        hook(
            HookContext(batch, None, 0, DynamicsStage.ON_CONVERGE, converged_mask=mask),
            DynamicsStage.ON_CONVERGE,
        )
    assert sink.writes == []
    hook(
        HookContext(batch, None, 0, DynamicsStage.ON_CONVERGE, converged_mask=torch.tensor([False, True])),
        None,
    )
    assert sink.writes[0].system_id.tolist() == [1]


def test_snapshot_constructor_errors():
    with pytest.raises(TypeError, match="sink"):
        SnapshotHook(object())
    with pytest.raises(ValueError, match="frequency"):
        ConvergedSnapshotHook(RecordingSink(), frequency=0)


# ---------------------------------------------------------------------------------------------- drift
def _fire(hook, batch, step):
    hook(HookContext(batch, None, step, DynamicsStage.AFTER_STEP), DynamicsStage.AFTER_STEP)


def _computed_batch() -> Batch:
    batch = _batch()
    DemoDynamics(_model(), dt=2.0).run(batch, n_steps=0)
    return batch


@pytest.mark.parametrize(
    ("metric", "expected"),
    [("absolute", 0.32), ("per_atom", 0.32 / 32), ("per_atom_per_step", 0.32 / 32 / 10)],
)
def test_drift_normalisation_by_hand(metric, expected):
    batch = _computed_batch()
    hook = EnergyDriftMonitorHook(threshold=1.0, metric=metric)
    _fire(hook, batch, 5)  # reference taken at step 5
    batch.energy = batch.energy + torch.tensor([[0.0], [-0.32]], dtype=batch.dtype)
    _fire(hook, batch, 15)  # 10 steps after the reference, not 15
    assert hook.drift.tolist() == pytest.approx([0.0, expected], rel=1e-12, abs=1e-15)


def test_drift_warns_or_raises_naming_step_and_systems():
    batch = _computed_batch()
    warn = EnergyDriftMonitorHook(threshold=1e-3, metric="absolute")
    fail = EnergyDriftMonitorHook(threshold=1e-3, metric="absolute", action="raise")
    for hook in (warn, fail):
        _fire(hook, batch, 0)
    _fire(warn, batch, 1)  # no drift: no warning (warnings are errors here)
    batch.energy = batch.energy + torch.tensor([[0.5], [0.0]], dtype=batch.dtype)
    with pytest.warns(EnergyDriftWarning, match=r"5\.000e-01 eV .* at step 7 .*system\(s\) \[0\]"):
        _fire(warn, batch, 7)
    with pytest.raises(EnergyDriftError, match=r"at step 7 .*system\(s\) \[0\]"):
        _fire(fail, batch, 7)


def test_drift_kinetic_switch():
    batch = _computed_batch()
    total = EnergyDriftMonitorHook(1.0, "absolute")
    potential = EnergyDriftMonitorHook(1.0, "absolute", include_kinetic=False)
    for hook in (total, potential):
        _fire(hook, batch, 0)
    kinetic = [atoms.get_kinetic_energy() for atoms in batch.to_atoms()]
    batch.velocities = torch.zeros_like(batch.velocities)
    for hook in (total, potential):
        _fire(hook, batch, 1)
    assert total.drift.tolist() == pytest.approx(kinetic, rel=1e-12)
    assert potential.drift.tolist() == [0.0, 0.0]


def test_refilled_slot_takes_a_new_reference():
    batch = _computed_batch()
    hook = EnergyDriftMonitorHook(threshold=1e-3, metric="absolute")
    _fire(hook, batch, 0)
    batch.energy = batch.energy + torch.tensor([[0.0], [5.0]], dtype=batch.dtype)
    batch.system_id = torch.tensor([0, 7])  # slot 1 now holds another structure
    _fire(hook, batch, 3)
    assert hook.drift.tolist() == [0.0, 0.0] and hook.reference_step.tolist() == [0, 3]


def test_nve_run_stays_under_a_realistic_threshold_and_a_large_step_trips_it():
    quiet = EnergyDriftMonitorHook(threshold=1e-5, action="raise", frequency=5)
    DemoDynamics(_model(), dt=1.0, n_steps=20, hooks=[quiet]).run(_batch())
    assert 0.0 < float(quiet.drift.max()) < 1e-5
    loud = EnergyDriftMonitorHook(threshold=1e-5, action="raise", frequency=5)
    with pytest.raises(EnergyDriftError, match="at step"):
        DemoDynamics(_model(), dt=40.0, n_steps=20, hooks=[loud]).run(_batch())


def test_drift_constructor_errors():
    for kwargs in ({"threshold": 0.0}, {"threshold": -1.0}, {"threshold": math.inf}):
        with pytest.raises(ValueError, match="threshold"):
            EnergyDriftMonitorHook(**kwargs)
    with pytest.raises(ValueError, match="metric"):
        EnergyDriftMonitorHook(1e-5, metric="relative")
    with pytest.raises(ValueError, match="action"):
        EnergyDriftMonitorHook(1e-5, action="ignore")


# ---------------------------------------------------------------------------------------------- profiler
INTERVALS = [
    f"{a.name}->{b.name}" for a, b in zip(list(DynamicsStage)[:7], list(DynamicsStage)[1:8], strict=True)
]


@pytest.fixture
def nvtx_calls(monkeypatch):
    import nvtx

    calls: list[tuple[str, str | None]] = []
    monkeypatch.setattr(nvtx, "push_range", lambda message=None, **kw: calls.append(("push", message)))
    monkeypatch.setattr(nvtx, "pop_range", lambda **kw: calls.append(("pop", None)))
    return calls


def test_profiler_times_every_interval_of_the_instrumented_steps(nvtx_calls):
    hook = ProfilerHook(frequency=2)
    # steps 0, 2 and 4; the compute run() does before the first step is not a step
    DemoDynamics(_model(), dt=2.0, n_steps=5, hooks=[hook]).run(_batch())
    summary = hook.summary()
    assert list(summary) == INTERVALS
    for stats in summary.values():
        assert stats["count"] == 3 and 0.0 <= stats["min_s"] <= stats["mean_s"] <= stats["max_s"]
        assert stats["total_s"] == pytest.approx(3 * stats["mean_s"]) and stats["std_s"] >= 0.0
    assert nvtx_calls == _expected_nvtx() * 3
    report = hook.report()
    assert all(label in report for label in INTERVALS)
    hook.reset()
    assert hook.summary() == {}


def _expected_nvtx() -> list[tuple[str, str | None]]:
    calls: list[tuple[str, str | None]] = []
    for k, stage in enumerate(list(DynamicsStage)[:7]):
        if k:
            calls.append(("pop", None))
        calls.append(("push", f"nvalchemi_ase/{stage.name}"))
    return [*calls, ("pop", None)]


def test_profiler_switches(nvtx_calls):
    no_nvtx, no_timer = ProfilerHook(enable_nvtx=False), ProfilerHook(enable_timer=False)
    DemoDynamics(_model(), dt=2.0, n_steps=2, hooks=[no_nvtx, no_timer]).run(_batch())
    assert no_timer.summary() == {} and nvtx_calls == _expected_nvtx() * 2
    assert all(stats["count"] == 2 for stats in no_nvtx.summary().values())
    with pytest.raises(ValueError, match="frequency"):
        ProfilerHook(frequency=0)


@pytest.mark.gpu
def test_profiler_uses_cuda_events_without_a_sync_per_step(nvtx_calls):
    hook = ProfilerHook()
    batch = _batch().to("cuda")
    DemoDynamics(_model(), dt=2.0, n_steps=3, hooks=[hook]).run(batch)
    assert len(hook._pending) == 3 * 7  # unresolved until summary()
    summary = hook.summary()
    assert list(summary) == INTERVALS and all(s["count"] == 3 for s in summary.values())


@pytest.mark.gpu
def test_csv_rows_on_cuda_equal_those_on_cpu(tmp_path):
    tables = {}
    for device in ("cpu", "cuda"):
        path = tmp_path / f"{device}.csv"
        hooks = [LoggingHook(frequency=2, log_path=path), EnergyDriftMonitorHook(1e-3, action="raise")]
        DemoDynamics(_model(), dt=2.0, n_steps=5, hooks=hooks).run(_batch().to(device))
        with open(path) as handle:
            tables[device] = list(csv.DictReader(handle))
    assert len(tables["cpu"]) == len(tables["cuda"]) == 6
    for ours, reference in zip(tables["cuda"], tables["cpu"], strict=True):
        assert {k: float(v) for k, v in ours.items()} == pytest.approx(
            {k: float(v) for k, v in reference.items()}, rel=1e-9, abs=1e-12
        )
