"""The spec's usage examples, verbatim but for ``nvalchemi`` → ``nvalchemi_ase``, run with one of our models.

``test_examples_are_the_specs`` checks every snippet below still appears in
``../shared/spec/dynamics-hooks-stages-and-usage.txt`` line for line (with the
package renamed back), so the two cannot drift apart.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import DemoDynamics
from tests.structures import argon_bulk

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "dynamics-hooks-stages-and-usage.txt"

EXAMPLES = {
    "logging": """\
from nvalchemi_ase.dynamics.hooks import LoggingHook
hook = LoggingHook(frequency=100, backend="csv", log_path="md_log.csv")
dynamics = DemoDynamics(model=model, n_steps=10_000, dt=0.5, hooks=[hook])
dynamics.run(batch)
""",
    "snapshots": """\
from nvalchemi_ase.dynamics.hooks import SnapshotHook
from nvalchemi_ase.dynamics import HostMemory
sink = HostMemory(capacity=10_000)
hook = SnapshotHook(sink=sink, frequency=10)
dynamics = DemoDynamics(model=model, n_steps=1_000, dt=0.5, hooks=[hook])
dynamics.run(batch) # 100 snapshots
trajectory = sink.read()
""",
    "safety": """\
from nvalchemi_ase.dynamics.hooks import MaxForceClampHook, NaNDetectorHook
dynamics = DemoDynamics(
model=model,
dt=0.5,
hooks=[
# Clamp first, then check — both fire at AFTER_COMPUTE
# in registration order.
MaxForceClampHook(max_force=50.0, log_clamps=True),
NaNDetectorHook(extra_keys=["stress"]),
],
)
""",
    "bias": """\
from nvalchemi_ase.hooks import BiasedPotentialHook
from nvalchemi_ase.dynamics.base import DynamicsStage
def harmonic_restraint(batch):
    \"\"\"Restrain center of mass to the origin.\"\"\"
    k = 10.0 # eV/Ų
    com = batch.positions.mean(dim=0, keepdim=True)
    bias_energy = 0.5 * k * (com ** 2).sum().unsqueeze(0).unsqueeze(0)
    bias_forces = -k * com.expand_as(batch.positions) / batch.num_nodes
    return bias_energy, bias_forces
hook = BiasedPotentialHook(bias_fn=harmonic_restraint, stage=DynamicsStage.AFTER_COMPUTE)
dynamics = DemoDynamics(model=model, dt=0.5, hooks=[hook])
""",
    "profiling": """\
from nvalchemi_ase.dynamics.hooks import ProfilerHook
hook = ProfilerHook(enable_nvtx=True, enable_timer=True, frequency=10)
dynamics = DemoDynamics(model=model, n_steps=1_000, dt=0.5, hooks=[hook])
# Run under: nsys profile python my_script.py
dynamics.run(batch)
""",
    "drift": """\
from nvalchemi_ase.dynamics.hooks import EnergyDriftMonitorHook
hook = EnergyDriftMonitorHook(
threshold=1e-5,
metric="per_atom_per_step",
action="raise", # or "warn" for production
frequency=100,
)
dynamics = DemoDynamics(model=model, dt=0.5, hooks=[hook])
""",
}


def _spec_lines() -> list[str]:
    return [line.strip() for line in SPEC.read_text().splitlines()]


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_examples_are_the_specs(name):
    wanted = [line.strip().replace("nvalchemi_ase", "nvalchemi") for line in EXAMPLES[name].splitlines()]
    wanted = [line for line in wanted if line]
    lines = _spec_lines()
    starts = [k for k, line in enumerate(lines) if line == wanted[0]]
    assert any(lines[k : k + len(wanted)] == wanted for k in starts), (
        f"example '{name}' is not in the spec as written"
    )


@pytest.fixture
def namespace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    atoms = argon_bulk(1, seed=0, rattle=0.05)
    atoms.set_velocities(np.random.default_rng(0).normal(scale=0.002, size=(len(atoms), 3)))
    batch = Batch.from_atoms(atoms, device="cpu")  # one system: the bias example's energy is [1, 1]
    model = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True)
    return {"model": model, "batch": batch, "DemoDynamics": DemoDynamics}


def _run(name: str, namespace: dict) -> dict:
    exec(compile(EXAMPLES[name], f"spec example '{name}'", "exec"), namespace)
    return namespace


def test_logging_example(namespace):
    _run("logging", namespace)
    rows = list(csv.DictReader(Path("md_log.csv").read_text().splitlines()))
    assert [int(float(r["step"])) for r in rows] == list(range(0, 10_000, 100))
    assert float(rows[-1]["energy"]) == pytest.approx(namespace["batch"].energy.item(), rel=1e-3)


def test_snapshot_example(namespace):
    done = _run("snapshots", namespace)
    assert len(done["sink"]) == 100  # "# 100 snapshots"
    assert done["trajectory"].num_graphs == 100


def test_safety_example(namespace):
    done = _run("safety", namespace)
    engine = done["dynamics"]
    assert "stress" in engine.properties  # NaNDetectorHook(extra_keys=["stress"]) asked for it
    engine.run(namespace["batch"], n_steps=5)
    assert torch.isfinite(namespace["batch"].stress).all()


def test_bias_example(namespace):
    batch = namespace["batch"]
    batch.positions = batch.positions + 1.0  # centre of mass off the origin: the bias pulls back
    done = _run("bias", namespace)
    done["dynamics"].run(batch, n_steps=3)
    unbiased = namespace["model"](batch)
    com = batch.positions.mean(dim=0)
    expected = unbiased["energy"] + 0.5 * 10.0 * com.square().sum()
    torch.testing.assert_close(batch.energy, expected, rtol=1e-12, atol=1e-12)


def test_profiling_example(namespace):
    done = _run("profiling", namespace)
    summary = done["hook"].summary()
    assert summary and all(entry["count"] == 100 for entry in summary.values())  # steps 0, 10, ..., 990


def test_drift_example(namespace):
    done = _run("drift", namespace)
    done["dynamics"].run(namespace["batch"], n_steps=300)  # fires at 0, 100, 200; small drift: no raise
    assert done["hook"].drift is not None and (done["hook"].drift < 1e-5).all()
