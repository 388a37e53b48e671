"""The spec's usage examples, verbatim but for ``nvalchemi`` → ``nvalchemi_ase``, run with one of our models.

``test_examples_are_the_specs`` checks every snippet below still appears in
``../shared/spec/dynamics-hooks-stages-and-usage.txt`` line for line (with the
package renamed back), so the two cannot drift apart.
"""

from __future__ import annotations

import csv
import runpy
from pathlib import Path

import pytest
import torch

SPEC = Path(__file__).resolve().parents[2] / "shared" / "spec" / "dynamics-hooks-stages-and-usage.txt"
EXAMPLE_FILE = Path(__file__).resolve().parents[1] / "examples" / "spec_hook_examples.py"
_example = runpy.run_path(str(EXAMPLE_FILE))  # "spec_hook_examples.py": the snippets live there
EXAMPLES: dict[str, str] = _example["EXAMPLES"]


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
    return _example["namespace"]()


def _run(name: str, namespace: dict) -> dict:
    return _example["run"](name, namespace)


def test_the_example_file_runs_every_snippet(capsys):
    done = _example["main"](["--only", "safety,bias,drift"])
    assert set(done) == {"safety", "bias", "drift"}
    assert capsys.readouterr().out.count("ran the spec's") == 3


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
