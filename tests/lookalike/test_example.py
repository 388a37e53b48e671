"""examples/ase_script_one_import.py runs with small settings and matches ASE."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from tests.tolerances import FLOAT64_RTOL

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ase_script_one_import.py"


def test_ase_script_one_import(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    main = runpy.run_path(str(EXAMPLE))["main"]
    worst = main(["--systems", "3", "--steps", "60", "--device", "cpu", "--out", str(tmp_path)])
    assert worst < FLOAT64_RTOL
    expected = {f"md_{b}.{ext}" for ext in ("log", "traj") for b in range(3)}
    assert {p.name for p in tmp_path.iterdir()} == expected
    out = capsys.readouterr().out
    assert "3 systems, 60 steps: 7 frames and 8 log lines per system" in out
