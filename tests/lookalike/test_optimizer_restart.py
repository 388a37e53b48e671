"""``restart=`` of the BFGS, LBFGS and MDMin look-alikes against ASE's own classes in the same script.

ASE's restart files: BFGS ``(H, pos0, forces0, maxstep)``, LBFGS ``(iteration,
s, y, rho, r0, f0, e0, task)``, MDMin ``(v, dt)``. Ours must write the same
content, and a new optimizer reading a file must continue as ASE's does.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.io.jsonio import read_json
from ase.optimize import BFGS as AseBFGS
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import MDMin as AseMDMin
from ase.optimize.optimize import RestartError as AseRestartError

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.optimize import BFGS, LBFGS, MDMin
from nvalchemi_ase.optimize.optimize import RestartError
from tests.lookalike.common import ARGON, TRAJECTORY_ATOL, assert_same_state, ours, theirs
from tests.structures import argon_bulk

PAIRS = {
    # memory=3 < the steps taken: the history is full and drops its oldest pair, before and after a restart
    "bfgs": (BFGS, AseBFGS, {"maxstep": 0.1, "alpha": 50.0}),
    "lbfgs": (LBFGS, AseLBFGS, {"maxstep": 0.1, "memory": 3, "damping": 0.9}),
    "mdmin": (MDMin, AseMDMin, {"dt": 0.1, "maxstep": 0.1}),
}
RESUMED = {
    # the second optimizer's arguments: BFGS takes maxstep from the file, MDMin keeps its own dt (as ASE)
    "bfgs": {"alpha": 50.0},
    "lbfgs": PAIRS["lbfgs"][2],
    "mdmin": {"dt": 0.15, "maxstep": 0.1},
}
FILE_RTOL = 1e-8
"""Restart file arrays, ours against ASE's, after a few steps (rho = 1/(y·s) amplifies round-off)."""
FMAX = 1e-6
"""eV/Å: never reached in these few steps, so every system steps (and writes its file) every time."""


def _calc() -> BatchedCalculator:
    return BatchedCalculator(LennardJones(**ARGON), device="cpu")


def _assert_same_content(mine: Any, reference: Any, where: str = "") -> None:
    """Two loaded restart files hold the same structure, the same types and the same values."""
    if isinstance(reference, np.ndarray):
        assert isinstance(mine, np.ndarray) and mine.shape == reference.shape, where
        np.testing.assert_allclose(mine, reference, rtol=FILE_RTOL, atol=TRAJECTORY_ATOL, err_msg=where)
    elif isinstance(reference, list | tuple):
        assert isinstance(mine, list | tuple) and len(mine) == len(reference), where
        for i, (a, b) in enumerate(zip(mine, reference, strict=True)):
            _assert_same_content(a, b, f"{where}[{i}]")
    elif isinstance(reference, float):
        assert type(mine) is float, where
        np.testing.assert_allclose(mine, reference, rtol=FILE_RTOL, err_msg=where)
    else:
        assert type(mine) is type(reference) and mine == reference, where


def _same_files(mine: Path, reference: Path) -> None:
    with open(mine) as fd_mine, open(reference) as fd_reference:
        _assert_same_content(
            read_json(fd_mine, always_array=False), read_json(fd_reference, always_array=False)
        )


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_restart_file_is_ases(name, tmp_path):
    ours_class, ase_class, params = PAIRS[name]
    atoms = argon_bulk(2, seed=3, rattle=0.25)
    for target, optimizer, label in ((ours(atoms), ours_class, "ours"), (theirs(atoms), ase_class, "ase")):
        optimizer(target, restart=tmp_path / f"{label}.json", logfile=None, **params).run(fmax=FMAX, steps=6)
    _same_files(tmp_path / "ours.json", tmp_path / "ase.json")


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_new_optimizer_resumes_from_the_file_as_ase(name, tmp_path):
    ours_class, ase_class, params = PAIRS[name]
    atoms = argon_bulk(2, seed=4, rattle=0.25)
    mine, reference = ours(atoms), theirs(atoms)
    opts = []
    for target, optimizer, label in ((mine, ours_class, "ours"), (reference, ase_class, "ase")):
        path = tmp_path / f"{label}.json"
        optimizer(target, restart=path, logfile=None, **params).run(fmax=FMAX, steps=5)
        opts.append(optimizer(target, restart=path, logfile=None, **RESUMED[name]))
    fresh = ours(mine)  # where the first run ended, without the file
    for opt in opts:
        opt.run(fmax=FMAX, steps=5)
    assert_same_state(mine, reference, name, momenta=False)
    assert opts[0].todict() | {"restart": None} == opts[1].todict() | {"restart": None}  # BFGS: maxstep 0.1
    _same_files(tmp_path / "ours.json", tmp_path / "ase.json")
    ours_class(fresh, logfile=None, **RESUMED[name]).run(fmax=FMAX, steps=5)
    assert np.abs(fresh.positions - mine.positions).max() > 1e-6  # the file was read


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_list_writes_and_reads_one_file_per_system(name, tmp_path):
    ours_class, ase_class, params = PAIRS[name]
    systems = [argon_bulk(2, seed=5, rattle=0.2), argon_bulk(1, seed=6, rattle=0.3)]  # 32 and 4 atoms
    calc = _calc()
    mine, references = [ours(atoms, calc) for atoms in systems], [theirs(atoms) for atoms in systems]
    pattern = str(tmp_path / "ours_{}.json")
    ours_class(mine, restart=pattern, logfile=None, **params).run(fmax=FMAX, steps=4)
    for b, reference in enumerate(references):
        ase_class(reference, restart=tmp_path / f"ase_{b}.json", logfile=None, **params).run(
            fmax=FMAX, steps=4
        )
        _same_files(Path(pattern.format(b)), tmp_path / f"ase_{b}.json")
    # system 1 without its file: system 0 resumes, system 1 starts fresh
    Path(pattern.format(1)).unlink()
    ours_class(mine, restart=pattern, logfile=None, **params).run(fmax=FMAX, steps=4)
    ase_class(references[0], restart=tmp_path / "ase_0.json", logfile=None, **params).run(fmax=FMAX, steps=4)
    ase_class(references[1], restart=tmp_path / "ase_1_fresh.json", logfile=None, **params).run(
        fmax=FMAX, steps=4
    )
    for b, reference_file in enumerate(("ase_0.json", "ase_1_fresh.json")):
        assert_same_state(mine[b], references[b], f"{name} system {b}", momenta=False)
        _same_files(Path(pattern.format(b)), tmp_path / reference_file)


def test_bfgs_restores_each_systems_maxstep_from_ases_files(tmp_path):
    systems = [argon_bulk(1, seed=7, rattle=0.3), argon_bulk(2, seed=8, rattle=0.2)]
    references = [theirs(atoms) for atoms in systems]
    for b, (reference, maxstep) in enumerate(zip(references, (0.05, 0.1), strict=True)):
        path = tmp_path / f"ase_{b}.json"
        AseBFGS(reference, restart=path, logfile=None, maxstep=maxstep).run(fmax=FMAX, steps=3)
        shutil.copy(path, tmp_path / f"ours_{b}.json")
    calc = _calc()
    mine = [ours(reference, calc) for reference in references]
    opt = BFGS(mine, restart=str(tmp_path / "ours_{}.json"), logfile=None)  # reads ASE's files
    assert opt.maxstep == [0.05, 0.1]
    opt.run(fmax=FMAX, steps=5)
    for b, reference in enumerate(references):
        ase_opt = AseBFGS(reference, restart=tmp_path / f"ase_{b}.json", logfile=None)
        assert ase_opt.maxstep == (0.05, 0.1)[b]
        ase_opt.run(fmax=FMAX, steps=5)
        assert_same_state(mine[b], reference, f"system {b}", momenta=False)
        _same_files(tmp_path / f"ours_{b}.json", tmp_path / f"ase_{b}.json")


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_a_corrupt_file_raises_restart_error_as_ase(name, tmp_path):
    ours_class, ase_class, params = PAIRS[name]
    path = tmp_path / "corrupt.json"
    path.write_text("{not json")
    atoms = argon_bulk(1)
    with pytest.raises(RestartError, match="Could not decode restart file"):
        ours_class(ours(atoms), restart=path, logfile=None, **params)
    with pytest.raises(AseRestartError, match="Could not decode restart file"):
        ase_class(theirs(atoms), restart=path, logfile=None, **params)


def test_lbfgs_rejects_a_history_written_with_another_memory(tmp_path):
    atoms = argon_bulk(1, seed=9, rattle=0.3)
    path = tmp_path / "lbfgs.json"
    AseLBFGS(theirs(atoms), restart=path, logfile=None, memory=5).run(fmax=FMAX, steps=6)  # 5 pairs
    with pytest.raises(ValueError, match="memory"):
        LBFGS(ours(atoms), restart=path, logfile=None, memory=3)
    LBFGS(ours(atoms), restart=path, logfile=None, memory=5)  # the same memory reads
