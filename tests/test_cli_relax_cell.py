"""``nvalchemi-ase run --relax-cell [--pressure GPa]``: cells relax to the pressure asked for."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.units import GPa

from nvalchemi_ase.cli import EXIT_BAD_INPUT, EXIT_OK, main


def _strained_copper(tmp_path):
    frames = []
    for k, a in enumerate((3.5, 3.7)):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat((1 + k, 1, 1))
        atoms.rattle(0.02, seed=k)
        frames.append(atoms)
    path = tmp_path / "cu.extxyz"
    ase.io.write(path, frames)
    return path


def test_relax_cell_reaches_the_pressure(tmp_path) -> None:
    out = tmp_path / "out"
    arguments = ["run", str(_strained_copper(tmp_path)), "--model", "emt", "--no-md", "--relax-cell"]
    arguments += ["--pressure", "2.0", "--fmax", "0.002", "--relax-steps", "1000", "-o", str(out), "-q"]
    assert main(arguments) == EXIT_OK
    for atoms in ase.io.read(out / "final.extxyz", ":"):
        assert not atoms.info["unconverged"]
        atoms.calc = AseEMT()
        residual = atoms.get_stress(voigt=False) + 2.0 * GPa * np.eye(3)
        assert (
            np.abs(residual).max() * len(atoms) / atoms.get_volume() < 0.002 * 1.01
            or np.abs(residual).max() < 1e-4
        )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--pressure", "1.0"], "--pressure applies to --relax-cell"),
        (["--relax-cell", "--no-relax"], "--no-relax skips"),
    ],
)
def test_inconsistent_cell_options_exit_2(tmp_path, capsys, arguments, message) -> None:
    source = _strained_copper(tmp_path)
    assert main(["run", str(source), *arguments, "-o", str(tmp_path / "o"), "-q"]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
