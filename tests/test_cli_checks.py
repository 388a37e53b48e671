"""The command line's promises: bad input is one line and exit 2 before anything is written; structures
that cannot run are set aside and the others finish; Ctrl-C keeps what finished; start-up loads nothing."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import ase.io
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from nvalchemi_ase.cli import ENSEMBLE_NAMES, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, main
from nvalchemi_ase.cli import pipeline as pipeline_module
from nvalchemi_ase.cli.progress import Progress

FAST = ["--steps", "4", "--relax-steps", "10", "--log-interval", "2", "--trajectory-interval", "2", "-q"]


def _copper(count: int) -> list[Atoms]:
    frames = []
    for k in range(count):
        atoms = bulk("Cu", "fcc", a=3.61, cubic=True)
        atoms.rattle(0.05, seed=k)
        frames.append(atoms)
    return frames


def _write(tmp_path: Path, frames: list[Atoms], name: str = "input.extxyz") -> Path:
    path = tmp_path / name
    ase.io.write(path, frames)
    return path


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("nvalchemi-ase: error: "), err
    return err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--timestep", "-1"], "--timestep must be a positive number of fs, got -1.0"),
        (["--temperature", "-5"], "--temperature must be zero or more kelvin, got -5.0"),
        (["--fmax", "0"], "--fmax must be a positive"),
        (["--andersen-prob", "2"], "--andersen-prob must be between 0 and 1"),
        (["--device", "tpu"], "--device tpu"),
        (["--max-atoms", "3"], "--max-atoms 3 is smaller than structure 0 (4 atoms)"),
        (["--model", "lj", "--model-param", "sigma=-1"], "model 'lj'"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, options, message):
    source = _write(tmp_path, _copper(2))
    out = tmp_path / "out"
    assert main(["run", str(source), "-o", str(out), *options, *FAST]) == EXIT_BAD_INPUT
    assert message in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_cuda_without_a_gpu_is_a_bad_option(tmp_path, capsys):
    out = tmp_path / "out"
    source = _write(tmp_path, _copper(1))
    assert main(["run", str(source), "--device", "cuda", "-o", str(out)]) == EXIT_BAD_INPUT
    assert "no CUDA GPU is available here" in _one_error_line(capsys)
    assert not out.exists()


def test_without_model_emt_is_used_when_it_has_every_element(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, _copper(1))), "-o", str(out), *FAST]) == EXIT_OK
    text = capsys.readouterr().out
    assert text.startswith("1 structure, model emt (defaults: asap_cutoff=False, skin=0.5 (Å))")
    assert "1/1 system done" in text


def test_without_model_other_elements_ask_for_one(tmp_path, capsys):
    argon = bulk("Ar", "fcc", a=5.26, cubic=True)
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, [argon])), "-o", str(out)]) == EXIT_BAD_INPUT
    err = _one_error_line(capsys)
    assert "has no parameters for Ar" in err and "--model (emt, lj, morse" in err
    assert not out.exists()


def _mixed(tmp_path: Path) -> Path:
    good = _copper(4)
    flat = good[1].copy()
    flat.cell = [[3.61, 0, 0], [7.22, 0, 0], [0, 0, 3.61]]  # two parallel periodic vectors
    crowded = good[2].copy()
    crowded.positions[1] = crowded.positions[0] + [0.1, 0.0, 0.0]
    gold_and_argon = good[3].copy()
    gold_and_argon.symbols[0] = "Ar"
    return _write(tmp_path, [good[0], flat, crowded, gold_and_argon, _copper(5)[4]])


def test_structures_that_cannot_run_are_set_aside_and_the_others_finish(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["run", str(_mixed(tmp_path)), "--model", "emt", "-o", str(out), *FAST]) == EXIT_OK
    text = capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    reasons = {entry["index"]: entry["reason"] for entry in summary["set_aside"]}
    assert sorted(reasons) == [1, 2, 3]
    assert "cell" in reasons[1] and "overlap" in reasons[2] and "no parameters for Ar" in reasons[3]
    assert "set aside: structure 2: atoms 0 and 1 overlap" in text
    finals = ase.io.read(out / "final.extxyz", ":")
    assert [a.info["system_id"] for a in finals] == [0, 4] and summary["finished"] == 2


def test_strict_makes_a_set_aside_structure_fatal_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "out"
    arguments = ["run", str(_mixed(tmp_path)), "--model", "emt", "--strict", "-o", str(out), *FAST]
    assert main(arguments) == EXIT_BAD_INPUT
    assert "--strict: structure 1:" in _one_error_line(capsys)
    assert not out.exists()


def test_non_finite_forces_set_a_system_aside_mid_run(tmp_path, monkeypatch, capsys):
    (tmp_path / "nan_calculator.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            from ase.calculators.emt import EMT

            class NaNForEight(EMT):
                def calculate(self, atoms=None, properties=("energy",), system_changes=()):
                    super().calculate(atoms, properties, system_changes)
                    if len(self.atoms) == 8:
                        self.results["forces"] = np.full_like(self.results["forces"], np.nan)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    frames = [*_copper(2), bulk("Cu", "fcc", a=3.61, cubic=True).repeat((2, 1, 1))]
    out = tmp_path / "out"
    model = ["--model", "nan_calculator:NaNForEight"]
    assert main(["run", str(_write(tmp_path, frames)), *model, "-o", str(out), *FAST]) == EXIT_OK
    summary = json.loads((out / "summary.json").read_text())
    assert [entry["index"] for entry in summary["set_aside"]] == [2]
    assert "non-finite energy or forces at step 0" in summary["set_aside"][0]["reason"]
    assert [a.info["system_id"] for a in ase.io.read(out / "final.extxyz", ":")] == [0, 1]


def test_ctrl_c_writes_the_finished_systems_and_names_the_rest(tmp_path, monkeypatch, capsys):
    out = tmp_path / "interrupted"
    original = pipeline_module.FusedStage.step
    calls = {"n": 0}

    def interrupting(self, batch=None):
        calls["n"] += 1
        if calls["n"] == 7:  # system 0 finished after 4 MD steps; system 1 is running
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(pipeline_module.FusedStage, "step", interrupting)
    arguments = ["run", str(_write(tmp_path, _copper(3))), "--no-relax", "--max-systems", "1", "-o", str(out)]
    assert main([*arguments, *FAST]) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "1 finished system in" in err and "final.extxyz" in err and "2 unfinished" in err
    assert [a.info["system_id"] for a in ase.io.read(out / "final.extxyz", ":")] == [0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["unfinished"] == [1, 2] and summary["finished"] == 1


def test_the_ctrl_c_handler_is_restored_after_the_files_are_written(tmp_path, monkeypatch, capsys):
    original_write = pipeline_module._write_final
    during_write = []

    def interrupting(self, batch=None):
        raise KeyboardInterrupt

    def recording(path, results):
        during_write.append(signal.getsignal(signal.SIGINT))
        original_write(path, results)

    monkeypatch.setattr(pipeline_module.FusedStage, "step", interrupting)
    monkeypatch.setattr(pipeline_module, "_write_final", recording)
    before = signal.getsignal(signal.SIGINT)
    arguments = ["run", str(_write(tmp_path, _copper(1))), "-o", str(tmp_path / "out"), *FAST]
    assert main(arguments) == EXIT_INTERRUPTED
    assert during_write == [pipeline_module._exit_now]  # a second Ctrl-C while writing exits at once
    assert signal.getsignal(signal.SIGINT) is before


# A CLI process whose relaxations never converge (fmax 1e-30) but the first: a lone atom, with no force
# at all. Writing final.extxyz announces itself and can be made to last, to catch a second Ctrl-C.
SIGNALLED = """
import signal, sys, time
from nvalchemi_ase.cli import main, pipeline

# Ctrl-C as in a terminal, also where the suite itself runs with SIGINT ignored (a shell's background job),
# which a child would otherwise inherit
signal.signal(signal.SIGINT, signal.default_int_handler)

write = pipeline._write_final
def announced(path, results):
    print("writing", flush=True)
    time.sleep(float(sys.argv[1]))
    write(path, results)
pipeline._write_final = announced
sys.exit(main(sys.argv[2:]))
"""


def _signalled_run(tmp_path: Path, write_seconds: float) -> subprocess.Popen[str]:
    lone = Atoms("Cu", cell=[12.0, 12.0, 12.0], pbc=True)
    path = _write(tmp_path, [lone, *_copper(3)[1:]])
    arguments = ["run", str(path), "--no-md", "--fmax", "1e-30", "--relax-steps", "10000000"]
    arguments += ["--max-systems", "2", "-o", str(tmp_path / "out"), "--trajectory-interval", "1", "-q"]
    process = subprocess.Popen(
        [sys.executable, "-c", SIGNALLED, str(write_seconds), *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = tmp_path / "out" / "trajectories" / "system_00002.traj"
    deadline = time.monotonic() + 240
    while not started.exists():  # system 0 has finished and system 2 took its slot
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended or never started system 2: {process.communicate()}")
        time.sleep(0.2)
    return process


def _reap(process: subprocess.Popen[str]) -> None:
    """Kill the child if it still runs and collect it: no process or pipe outlives its test."""
    process.kill()
    process.communicate()


def test_a_real_ctrl_c_writes_the_finished_system_and_names_the_unfinished(tmp_path):
    process = _signalled_run(tmp_path, write_seconds=0)
    try:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        _reap(process)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "interrupted. Written: 1 finished system" in err
    assert [a.info["system_id"] for a in ase.io.read(tmp_path / "out" / "final.extxyz", ":")] == [0]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["interrupted"] and summary["finished"] == 1 and summary["unfinished"] == [1, 2]


def test_a_second_real_ctrl_c_while_writing_exits_at_once(tmp_path):
    process = _signalled_run(tmp_path, write_seconds=600)
    try:
        process.send_signal(signal.SIGINT)
        assert process.stdout is not None
        watchdog = threading.Timer(240, process.kill)  # a run that never writes: its output ends, no hang
        watchdog.start()
        try:
            assert "writing" in iter(lambda: process.stdout.readline().strip(), "")  # type: ignore[union-attr]
        finally:
            watchdog.cancel()
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=60)  # long before the 600 s write would end
    finally:
        _reap(process)
    assert process.returncode == EXIT_INTERRUPTED
    assert not (tmp_path / "out" / "summary.json").exists()


def test_frames_carry_their_step_and_stage(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(_write(tmp_path, _copper(1))), "-o", str(out), *FAST]) == EXIT_OK
    frames = ase.io.read(out / "trajectories" / "system_00000.traj", ":")
    steps = [a.info["step"] for a in frames]
    assert steps == sorted(steps) and steps[0] == 1  # fused steps completed
    assert {a.info["stage"] for a in frames[:-1]} <= {0, 1} and frames[-1].info["stage"] == 2  # done


def test_progress_off_a_terminal_prints_plain_lines_with_stage_counts():
    stream = io.StringIO()
    progress = Progress(5, ["relaxing", "in MD"], set_aside=1, stream=stream)
    progress.finished(2)
    progress.update(40, [1, 2])
    progress.close()
    assert stream.getvalue().startswith("step 40: 1 relaxing, 2 in MD, 2/5 done, 1 set aside (")


def test_version_help_and_plurals():
    from nvalchemi_ase import __version__
    from nvalchemi_ase.cli import parser
    from nvalchemi_ase.cli.pipeline import ENSEMBLES

    assert set(ENSEMBLE_NAMES) == set(ENSEMBLES)
    with pytest.raises(SystemExit):
        parser().parse_args(["--version"])
    for command in ("run", "demo"):
        text = parser()._subparsers._group_actions[0].choices[command].format_help()  # type: ignore[union-attr]
        assert "``" not in text and ":class:" not in text
        assert "asap_cutoff" in text and "sigma=1.0" in text and "--seed SEED" in text
    assert __version__


def test_import_and_help_load_neither_torch_nor_ase():
    code = (
        "import sys, nvalchemi_ase, nvalchemi_ase.cli as cli; cli.parser().format_help();"
        "print(sorted(m for m in ('torch', 'ase', 'warp', 'numpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_demo_structures_are_all_emt_elements():
    from nvalchemi_ase.cli.demo import demo_structures
    from nvalchemi_ase.cli.models import MODELS

    elements = MODELS["emt"].elements
    assert elements is not None
    assert all(set(a.get_chemical_symbols()) <= elements() for a in demo_structures(8))
