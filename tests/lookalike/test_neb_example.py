"""examples/neb_screen.py runs and its barriers are ASE's (same end states, ASE's EMT, FIRE and NEB)."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
from ase.calculators.emt import EMT as AseEMT
from ase.mep import NEB, NEBTools
from ase.optimize import FIRE as AseFIRE

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "neb_screen.py"


def test_neb_screen_barriers_are_ases(capsys) -> None:
    example = runpy.run_path(str(EXAMPLE))
    barriers = example["main"](["--sizes", "2", "--images", "4", "--device", "cpu"])
    assert "Au hop barrier" in capsys.readouterr().out
    initial, final = example["end_states"](2, example["BatchedCalculator"](example["EMT"](), device="cpu"))
    images = [initial.copy() for _ in range(3)] + [final.copy()]
    for image in images:
        image.calc = AseEMT()
    band = NEB(images, climb=True, method="improvedtangent")
    band.interpolate()
    AseFIRE(band, logfile=None).run(fmax=0.05)
    reference, _ = NEBTools(band.images).get_barrier()
    np.testing.assert_allclose(barriers, [reference], rtol=1e-8)
