"""``nvalchemi-ase neb``: bands from files, barriers in summary.json equal to ASE's own NEB run."""

from __future__ import annotations

import json

import ase.io
import numpy as np
from ase.calculators.emt import EMT as AseEMT
from ase.mep import NEB, NEBTools
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase.cli import main
from tests.lookalike.neb_cases import adatom_hop, vacancy_jump


def ase_barriers(ends, images: int) -> tuple[float, float]:
    initial, final = ends
    band_images = [initial.copy() for _ in range(images - 1)] + [final.copy()]
    for image in band_images:
        image.calc = AseEMT()
    band = NEB(band_images, climb=True, method="improvedtangent")
    band.interpolate(apply_constraint=False)
    AseFIRE(band, logfile=None).run(fmax=0.05, steps=1000)
    forward, change = NEBTools(band.images).get_barrier()
    return forward, forward - change


def test_pairs_file_writes_bands_summary_and_plot(tmp_path, capsys) -> None:
    cases = {"hop": adatom_hop(), "vacancy": vacancy_jump()}
    lines = []
    for name, (initial, final) in cases.items():
        ase.io.write(tmp_path / f"{name}_initial.traj", initial)
        ase.io.write(tmp_path / f"{name}_final.traj", final)
        lines.append(f"{name}_initial.traj {name}_final.traj")
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    output = tmp_path / "out"
    code = main(
        ["neb", "--pairs", str(tmp_path / "pairs.txt"), "--images", "5", "--climb", "-o", str(output)]
    )
    assert code == 0
    summary = json.loads((output / "summary.json").read_text())
    for row, ends in zip(summary["bands"], cases.values(), strict=True):
        forward, reverse = ase_barriers(ends, 5)
        np.testing.assert_allclose(
            [row["forward_barrier"], row["reverse_barrier"]], [forward, reverse], atol=1e-8
        )
        assert row["converged"] and row["fmax"] < 0.05
        band = ase.io.read(output / f"band_{row['band']:03d}.traj", ":")
        assert len(band) == 5
        np.testing.assert_allclose(NEBTools(band).get_barrier()[0], forward, atol=1e-8)
    assert (output / "energy_profile.png").stat().st_size > 0
    assert "forward barrier" in capsys.readouterr().out


def test_bad_input_exits_2(tmp_path, capsys) -> None:
    initial, _ = adatom_hop()
    _, other = vacancy_jump()
    ase.io.write(tmp_path / "a.traj", initial)
    ase.io.write(tmp_path / "b.traj", other)
    assert main(["neb", str(tmp_path / "a.traj"), "-o", str(tmp_path / "o")]) == 2
    assert main(["neb", str(tmp_path / "a.traj"), str(tmp_path / "b.traj"), "-o", str(tmp_path / "o")]) == 2
    assert "pair 0: the initial and final structures hold different atoms" in capsys.readouterr().err
    assert main(["neb", str(tmp_path / "a.traj"), str(tmp_path / "a.traj"), "--images", "2"]) == 2
