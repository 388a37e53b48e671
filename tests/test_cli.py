"""The command line: the demo and run jobs write readable outputs; bad input exits 2 with a clear message."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase.build import bulk

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, main
from nvalchemi_ase.cli import pipeline as pipeline_module

SMALL = ["--steps", "5", "--relax-steps", "30", "--log-interval", "2", "--trajectory-interval", "2", "-q"]


def _input_file(tmp_path: Path, count: int = 3) -> Path:
    frames = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat((1 + k % 2, 1, 1))
        atoms.rattle(0.1, seed=k)
        frames.append(atoms)
    path = tmp_path / "input.extxyz"
    ase.io.write(path, frames)
    return path


def test_demo_writes_every_output(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--structures", "4", "-o", str(out), *SMALL]) == EXIT_OK
    text = capsys.readouterr().out
    assert "4/4 systems done" in text and "ase gui" in text
    finals = ase.io.read(out / "final.extxyz", ":")
    assert [a.info["system_id"] for a in finals] == [0, 1, 2, 3]
    assert all(np.isfinite(a.get_potential_energy()) for a in finals)
    trajectories = sorted((out / "trajectories").glob("system_*.traj"))
    assert len(trajectories) == 4 and all(len(ase.io.read(p, ":")) >= 2 for p in trajectories)
    rows = list(csv.DictReader((out / "log.csv").read_text().splitlines()))
    assert {"step", "system", "status", "energy", "fmax", "temperature"} <= set(rows[0])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["systems"] == 4 and summary["finished"] == 4


def test_run_relaxes_and_runs_md_with_lj(tmp_path):
    source = _input_file(tmp_path)
    out = tmp_path / "run"
    params = [
        "--model",
        "lj",
        "--model-param",
        "sigma=3.4",
        "--model-param",
        "epsilon=0.0104",
        "--model-param",
        "rc=8.5",
    ]
    assert main(["run", str(source), *params, "-o", str(out), "--ensemble", "nve", *SMALL]) == EXIT_OK
    finals = ase.io.read(out / "final.extxyz", ":")
    assert len(finals) == 3 and [len(a) for a in finals] == [4, 8, 4]


def test_relax_only_reaches_fmax(tmp_path):
    source = _input_file(tmp_path, 2)
    out = tmp_path / "relax"
    params = [
        "--model",
        "lj",
        "--model-param",
        "sigma=3.4",
        "--model-param",
        "epsilon=0.0104",
        "--model-param",
        "rc=8.5",
    ]
    assert (
        main(
            [
                "run",
                str(source),
                *params,
                "--no-md",
                "--fmax",
                "0.01",
                "--relax-steps",
                "300",
                "-o",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    for atoms in ase.io.read(out / "final.extxyz", ":"):
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 0.01


def test_any_ase_calculator_by_import_path(tmp_path):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    source = tmp_path / "cu.traj"
    ase.io.write(source, atoms)
    out = tmp_path / "emt"
    assert main(["run", str(source), "--model", "ase.calculators.emt:EMT", "-o", str(out), *SMALL]) == EXIT_OK
    assert len(ase.io.read(out / "final.extxyz", ":")) == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["run", "missing.xyz"], "does not exist"),
        (["demo", "--model", "nonsense"], "unknown model 'nonsense'"),
        (["demo", "--model", "lj", "--model-param", "sigmaa=1.0"], "model 'lj'"),
        (["demo", "--model", "math:nothing"], "unknown model 'math:nothing'"),
        (["demo", "--model", "?"], "7net-0"),
        (["demo", "--no-relax", "--no-md"], "nothing to do"),
        (["demo", "--steps", "0"], "--steps must be at least 1"),
    ],
)
def test_bad_input_exits_2_with_a_message(tmp_path, monkeypatch, capsys, arguments, message):
    monkeypatch.chdir(tmp_path)
    assert main([*arguments, "-q"] if arguments[0] != "run" else arguments) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_unreadable_input_and_unwritable_output(tmp_path, capsys):
    garbage = tmp_path / "garbage.xyz"
    garbage.write_text("this is not a structure\n")
    assert main(["run", str(garbage), "-o", str(tmp_path / "x")]) == EXIT_BAD_INPUT
    assert "cannot read" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["demo", "-o", str(blocker / "sub"), "-q"]) == EXIT_BAD_INPUT
    assert "cannot write to output folder" in capsys.readouterr().err


def test_interrupt_leaves_readable_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "interrupted"
    original = pipeline_module.FusedStage.step
    calls = {"n": 0}

    def interrupting(self, batch=None):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(pipeline_module.FusedStage, "step", interrupting)
    assert main(["demo", "--structures", "3", "-o", str(out), *SMALL]) == EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err
    for path in (out / "trajectories").glob("*.traj"):
        assert len(ase.io.read(path, ":")) >= 1
    assert len(list(csv.DictReader((out / "log.csv").read_text().splitlines()))) >= 3


def test_plot_writes_pngs(tmp_path, capsys):
    out = tmp_path / "demo"
    main(["demo", "--structures", "3", "-o", str(out), *SMALL])
    assert main(["plot", str(out / "log.csv")]) == EXIT_OK
    for name in ("energy", "temperature", "fmax"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(out / "log.csv"), "--aggregate", "-o", str(tmp_path / "agg")]) == EXIT_OK
    assert (tmp_path / "agg" / "fmax.png").exists()
    assert main(["plot", str(tmp_path / "nope.csv")]) == EXIT_BAD_INPUT


def test_python_dash_m_runs():
    done = subprocess.run(
        [sys.executable, "-m", "nvalchemi_ase", "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and "demo" in done.stdout and "plot" in done.stdout


@pytest.mark.parametrize("ensemble", ["langevin-baoab", "berendsen", "bussi", "nose-hoover", "andersen"])
def test_every_ensemble_runs(tmp_path, ensemble):
    out = tmp_path / ensemble
    arguments = ["demo", "--structures", "2", "--no-relax", "--ensemble", ensemble, "-o", str(out), *SMALL]
    assert main(arguments) == EXIT_OK
    finals = ase.io.read(out / "final.extxyz", ":")
    assert len(finals) == 2 and all(a.info["finished"] for a in finals)
    assert any(
        np.abs(a.get_momenta()).max() > 0
        for a in ase.io.read(out / "trajectories" / "system_00000.traj", ":")
    )
