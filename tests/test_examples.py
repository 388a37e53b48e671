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


def test_relax_then_md(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    results = _load("relax_then_md.py")["main"](["--systems", "3", "--md-steps", "20", "--device", "cpu"])
    assert len(results) == 3 and (tmp_path / "relax_then_md.csv").exists()


def test_inflight_stream(tmp_path, monkeypatch) -> None:
    import ase.io

    monkeypatch.chdir(tmp_path)
    results = _load("inflight_stream.py")["main"](["--structures", "9", "--slots", "3", "--device", "cpu"])
    assert [r.info["system_id"] for r in results] == list(range(9))
    assert len(list((tmp_path / "stream_out").glob("*.traj"))) == 9
    assert len(ase.io.read(tmp_path / "stream_out" / "system_00008.traj", ":")) == 1


def test_custom_hook_tracks_the_minimum() -> None:
    lowest = _load("custom_hook.py")["main"](["--steps", "20", "--device", "cpu"])
    assert lowest.shape == (4,) and (lowest < 0).all()


def test_every_example_has_a_test() -> None:
    """Each example file is run by some test (here, or beside the feature it shows)."""
    tests = Path(__file__).resolve().parent
    test_text = "\n".join(p.read_text() for p in tests.rglob("test_*.py"))
    untested = [p.name for p in EXAMPLES.glob("*.py") if f'"{p.name}"' not in test_text]
    assert untested == []


def test_batch_independent_noise(capsys: pytest.CaptureFixture[str]) -> None:
    difference = _load("batch_independent_noise.py")["main"](["--steps", "30", "--device", "cpu"])
    assert difference < 1e-9
    assert "alone vs. in a batch" in capsys.readouterr().out


def test_npt_pressures() -> None:
    *volumes, difference = _load("npt_pressures.py")["main"](["--steps", "20"])
    assert volumes == sorted(volumes, reverse=True)  # higher pressure, smaller volume
    assert difference < 1e-10


def test_pretrained_relaxes_a_ragged_list(capsys) -> None:
    pytest.importorskip("sevenn", reason="sevenn is not installed (extra [sevenn])")
    after = _load("pretrained.py")["main"](["--systems", "3", "--steps", "3", "--device", "cpu"])
    assert len(after) == 3 and all(-5.0 < e < -3.0 for e in after)  # copper: about -4 eV/atom in 7net-0
    assert "7net-0: 3 structures" in capsys.readouterr().out


def test_safe_runs_names_the_system_and_keeps_the_last_step() -> None:
    results = _load("safe_runs.py")["main"](["--device", "cpu"])
    assert "system(s) [1]" in results["message"]
    assert results["nsteps"] == 10 and results["moved"] > 0.0
    assert results["energy"] < 0.0  # a finite, bound argon energy


def test_relax_cell_reaches_the_same_volume_per_atom() -> None:
    results = _load("relax_cell.py")["main"](
        ["--systems", "4", "--md-steps", "2", "--device", "cpu", "--fmax", "1e-3"]
    )
    volumes = [atoms.get_volume() / len(atoms) for atoms in results]
    assert len(results) == 4 and max(volumes) - min(volumes) < 5e-3
    assert not any(atoms.info["unconverged"] for atoms in results)


def test_checkpoint_resume_is_bit_for_bit(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    difference = _load("checkpoint_resume.py")["main"](["--steps", "12", "--every", "4", "--device", "cpu"])
    assert difference == 0.0 and (tmp_path / "run.ckpt").exists()


def test_distributed_screen_finds_every_structure(capsys) -> None:
    pytest.importorskip("distributed")
    energies = _load("distributed_screen.py")["main"](
        ["--structures", "6", "--workers", "1", "--chunk-size", "2", "--no-processes", "--device", "cpu"]
    )
    assert sorted(energies) == list(range(6))
    assert "lowest energy" in capsys.readouterr().out
