"""The hook recipes (examples/hook_recipes.py) run, and each does what it says."""

from __future__ import annotations

import csv
import runpy
from pathlib import Path

import pytest
import torch

EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "examples" / "hook_recipes.py"
_example = runpy.run_path(str(EXAMPLE_FILE))  # "hook_recipes.py": the recipes live there
EXAMPLES: dict[str, str] = _example["EXAMPLES"]


def test_every_recipe_is_tested():
    tested = {"logging", "snapshots", "safety", "bias", "profiling", "drift"}
    assert set(EXAMPLES) == tested


@pytest.fixture
def namespace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return _example["namespace"]()


def _run(name: str, namespace: dict) -> dict:
    return _example["run"](name, namespace)


def test_the_example_file_runs_every_snippet(capsys):
    done = _example["main"](["--only", "safety,bias,drift"])
    assert set(done) == {"safety", "bias", "drift"}
    assert capsys.readouterr().out.count("hook recipe") == 3


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
