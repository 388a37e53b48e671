"""Every example runs, with small settings, and its numbers are checked."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

from tests.tolerances import FLOAT64_RTOL

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> dict:
    sys.path.insert(0, str(EXAMPLES))
    try:
        return runpy.run_path(str(EXAMPLES / name))
    finally:
        sys.path.remove(str(EXAMPLES))


def test_batch_energies_agrees_with_ase(capsys: pytest.CaptureFixture[str]) -> None:
    worst = _load("batch_energies.py")["main"](["--systems", "8", "--device", "cpu"])
    assert worst < FLOAT64_RTOL
    out = capsys.readouterr().out
    assert "8 systems" in out and out.count("\n") > 10


def test_every_example_has_a_test() -> None:
    tested = {"batch_energies.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested
