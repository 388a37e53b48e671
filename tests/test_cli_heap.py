"""Garbage collection around a CLI job: off while it sets up, set-up frozen for the run, all put back."""

from __future__ import annotations

import gc

import pytest

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, main
from nvalchemi_ase.cli import pipeline as pipeline_module
from nvalchemi_ase.cli.heap import SetUpHeap
from tests.test_cli import SMALL


@pytest.fixture
def collector_restored():
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable() if enabled else gc.disable()


def test_the_collector_is_off_for_set_up_and_on_for_the_run_with_set_up_frozen(collector_restored):
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with SetUpHeap() as heap:
        assert not gc.isenabled()
        made = [[] for _ in range(1000)]
        heap.settle()
        assert gc.isenabled() and gc.get_freeze_count() >= len(made)
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_a_caller_without_a_collector_keeps_it_off(collector_restored):
    gc.disable()
    with SetUpHeap() as heap:
        heap.settle()
        assert not gc.isenabled() and gc.get_freeze_count() > 0
    assert not gc.isenabled() and gc.get_freeze_count() == 0


def test_an_error_before_or_after_settling_puts_the_collector_back(collector_restored):
    for settle in (False, True):
        with pytest.raises(KeyError), SetUpHeap() as heap:
            if settle:
                heap.settle()
            raise KeyError("set-up failed")
        assert gc.isenabled() and gc.get_freeze_count() == 0


def test_the_demo_runs_with_set_up_frozen_and_leaves_the_collector_as_it_was(
    tmp_path, monkeypatch, collector_restored
):
    seen = []
    original = pipeline_module.FusedStage.step

    def step(self, batch=None):
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        return original(self, batch)

    monkeypatch.setattr(pipeline_module.FusedStage, "step", step)
    assert main(["demo", "--structures", "3", "-o", str(tmp_path / "demo"), *SMALL]) == EXIT_OK
    assert seen and all(enabled and frozen > 10_000 for enabled, frozen in seen)  # torch, ASE, warp
    assert gc.isenabled() and gc.get_freeze_count() == 0

    def interrupted(self, batch=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline_module.FusedStage, "step", interrupted)
    assert main(["demo", "--structures", "3", "-o", str(tmp_path / "stopped"), *SMALL]) == EXIT_INTERRUPTED
    assert gc.isenabled() and gc.get_freeze_count() == 0
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["demo", "-o", str(blocker / "sub"), "-q"]) == EXIT_BAD_INPUT  # refused in set-up
    assert gc.isenabled() and gc.get_freeze_count() == 0


def test_neb_relaxes_its_bands_with_set_up_frozen(tmp_path, monkeypatch, collector_restored):
    import ase.io
    from ase.mep import NEB

    from tests.lookalike.neb_cases import adatom_hop

    initial, final = adatom_hop()
    ase.io.write(tmp_path / "initial.traj", initial)
    ase.io.write(tmp_path / "final.traj", final)
    (tmp_path / "pairs.txt").write_text("initial.traj final.traj\n")
    seen = []
    original = NEB.get_forces

    def get_forces(self, *args, **kwargs):
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NEB, "get_forces", get_forces)
    command = ["neb", "--pairs", str(tmp_path / "pairs.txt"), "--images", "4", "-o", str(tmp_path / "out")]
    assert main(command) == EXIT_OK
    assert seen and all(enabled and frozen > 10_000 for enabled, frozen in seen)
    assert gc.isenabled() and gc.get_freeze_count() == 0
