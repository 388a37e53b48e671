"""NEB and DyNEB through our optimizers against ASE's optimizers on ASE's NEB, step by step (EMT, float64)."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixBondLength
from ase.io import read
from ase.mep import NEB, DyNEB, NEBTools
from ase.optimize import BFGS as AseBFGS
from ase.optimize import FIRE as AseFIRE
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import MDMin as AseMDMin

from nvalchemi_ase.optimize import BFGS, FIRE, LBFGS, MDMin
from tests.lookalike.neb_cases import (
    adatom_hop,
    assert_same_band,
    band,
    fcc_to_hcp_hop,
    ours,
    rotated_cluster,
    vacancy_jump,
)

PAIRS = {
    "FIRE": (FIRE, AseFIRE),
    "BFGS": (BFGS, AseBFGS),
    "LBFGS": (LBFGS, AseLBFGS),
    "MDMin": (MDMin, AseMDMin),
}
STEPS = 25


def step_by_step(mine, reference, optimizer: str, fmax: float = 0.05, steps: int = STEPS, **kwargs):
    """Run our optimizer on ``mine`` and ASE's on ``reference`` together, comparing after every step."""
    ours_class, ase_class = PAIRS[optimizer]
    ours_opt = ours_class(mine, logfile=None, **kwargs)
    ase_opt = ase_class(reference, logfile=None, **kwargs)
    pairs = zip(ours_opt.irun(fmax=fmax, steps=steps), ase_opt.irun(fmax=fmax, steps=steps), strict=True)
    for step, (done, ase_done) in enumerate(pairs):
        assert_same_band(mine, reference, f"{optimizer} step {step}")
        assert done == ase_done, f"{optimizer} step {step}"
    assert ours_opt.nsteps == ase_opt.nsteps
    return ours_opt


CASES = [
    (optimizer, method, climb)
    for optimizer in sorted(PAIRS)
    for method, climb in [("improvedtangent", True), ("aseneb", False), ("aseneb", True), ("eb", True)]
]
QUICK = {("FIRE", "aseneb", True), ("FIRE", "eb", True), ("FIRE", "aseneb", False)} | {
    (optimizer, "improvedtangent", True) for optimizer in PAIRS
}


@pytest.mark.parametrize(
    ("optimizer", "method", "climb"),
    [case if case in QUICK else pytest.param(*case, marks=pytest.mark.slow) for case in CASES],
)
def test_adatom_hop_equals_ase(optimizer: str, method: str, climb: bool) -> None:
    ends = adatom_hop()
    kwargs = {"method": method, "climb": climb, "k": [0.1, 0.2, 0.15, 0.1, 0.3]}
    step_by_step(band(ends, 6, ours, **kwargs), band(ends, 6, AseEMT, **kwargs), optimizer)


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
@pytest.mark.parametrize("method", ["improvedtangent", "eb"])
def test_vacancy_jump_with_fixed_layer_equals_ase(optimizer: str, method: str) -> None:
    ends = vacancy_jump()
    mine, reference = (
        band(ends, 5, ours, method=method, climb=True),
        band(ends, 5, AseEMT, method=method, climb=True),
    )
    step_by_step(mine, reference, optimizer)
    fixed = ends[0].constraints[0].get_indices()
    for image, start in zip(mine.images, band(ends, 5, ours).images, strict=True):
        np.testing.assert_array_equal(image.positions[fixed], start.positions[fixed])


@pytest.mark.parametrize("optimizer", ["FIRE", "BFGS"])
@pytest.mark.parametrize("ends", [adatom_hop, vacancy_jump], ids=["adatom", "vacancy"])
def test_dyneb_equals_ase(optimizer: str, ends) -> None:
    kwargs = {"fmax": 0.05, "scale_fmax": 1.0, "climb": True}
    mine, reference = band(ends(), 7, ours, DyNEB, **kwargs), band(ends(), 7, AseEMT, DyNEB, **kwargs)
    step_by_step(mine, reference, optimizer, steps=40)


def test_oblique_cell_equals_ase() -> None:
    """Al(111): the springs' minimum images searched among neighbouring cells, as ASE's find_mic."""
    ends = fcc_to_hcp_hop()
    step_by_step(band(ends, 5, ours, climb=True), band(ends, 5, AseEMT, climb=True), "FIRE", steps=15)


@pytest.mark.parametrize("ends", [rotated_cluster, adatom_hop], ids=["cluster", "periodic"])
def test_remove_rotation_and_translation_equals_ase(ends) -> None:
    initial, final = (atoms.copy() for atoms in ends())
    for atoms in (initial, final):
        atoms.set_constraint()
    kwargs = {"remove_rotation_and_translation": True, "climb": True}
    mine, reference = band((initial, final), 5, ours, **kwargs), band((initial, final), 5, AseEMT, **kwargs)
    step_by_step(mine, reference, "FIRE", steps=15)
    np.testing.assert_allclose(mine.images[-1].positions, reference.images[-1].positions, atol=1e-10)


def test_images_on_a_plain_ase_calculator_equal_ase() -> None:
    ends = adatom_hop()
    mine, reference = band(ends, 5, AseEMT, climb=True), band(ends, 5, AseEMT, climb=True)
    step_by_step(mine, reference, "FIRE", steps=10)


def test_bands_in_one_batch_equal_each_band_alone() -> None:
    """Bands of different systems and image counts in one batch: each equals itself alone, and stops alone."""

    def bands():
        return [
            band(adatom_hop(), 5, ours, climb=True),
            band(vacancy_jump(), 7, ours, method="eb"),
            band(adatom_hop((3, 2, 3)), 4, ours, method="aseneb", climb=True),
        ]

    together = bands()
    optimizer = FIRE(together, logfile=None)
    assert optimizer.run(fmax=0.05, steps=200)
    for b, alone in enumerate(bands()):
        single = FIRE(alone, logfile=None)
        assert single.run(fmax=0.05, steps=200)
        assert_same_band(together[b], alone, f"band {b}")
    steps = [FIRE(neb, logfile=None) for neb in bands()]
    assert (
        len({s.run(fmax=0.05, steps=200) and s.nsteps for s in steps}) > 1
    )  # they converge at different steps


def test_trajectory_is_what_ase_writes_and_nebtools_reads(tmp_path) -> None:
    ends = adatom_hop()
    mine, reference = band(ends, 5, ours, climb=True), band(ends, 5, AseEMT, climb=True)
    FIRE(mine, logfile=None, trajectory=tmp_path / "ours.traj").run(fmax=0.05, steps=8)
    AseFIRE(reference, logfile=None, trajectory=str(tmp_path / "ase.traj")).run(fmax=0.05, steps=8)
    frames, ase_frames = read(tmp_path / "ours.traj", ":"), read(tmp_path / "ase.traj", ":")
    assert len(frames) == len(ase_frames) == 5 * 9
    for frame, ase_frame in zip(frames, ase_frames, strict=True):
        np.testing.assert_allclose(frame.positions, ase_frame.positions, atol=1e-10)
        np.testing.assert_allclose(frame.get_potential_energy(), ase_frame.get_potential_energy(), atol=1e-10)
        np.testing.assert_allclose(frame.get_forces(), ase_frame.get_forces(), atol=1e-10)
    barrier = NEBTools(frames[-5:]).get_barrier()
    np.testing.assert_allclose(barrier, NEBTools(ase_frames[-5:]).get_barrier(), atol=1e-10)


def test_log_lines_are_ases(tmp_path) -> None:
    ends = adatom_hop()
    FIRE(band(ends, 5, ours), logfile=tmp_path / "ours.log").run(fmax=0.05, steps=5)
    AseFIRE(band(ends, 5, AseEMT), logfile=str(tmp_path / "ase.log")).run(fmax=0.05, steps=5)

    def numbers(path):
        return [line.split()[3:] for line in path.read_text().splitlines()[1:]]

    assert numbers(tmp_path / "ours.log") == numbers(tmp_path / "ase.log")


def test_unsupported_options_raise_naming_the_band() -> None:
    ends = adatom_hop()
    with pytest.raises(NotImplementedError, match="band 1: precon='Exp' is not supported"):
        FIRE([band(ends, 5, ours), band(ends, 5, ours, method="spline", precon="Exp")], logfile=None)
    constrained = band(ends, 5, ours)
    constrained.images[2].set_constraint(FixBondLength(0, 1))
    with pytest.raises(NotImplementedError, match="band 0, image 2: constraint FixBondLength"):
        FIRE(constrained, logfile=None)
    shared = band(ends, 5, ours)
    calculator = ours()
    for image in shared.images:
        image.calc = calculator
    with pytest.raises(ValueError, match="band 0: One or more NEB images share the same calculator"):
        FIRE(shared, logfile=None)


def test_edits_between_runs_reach_the_device() -> None:
    """``interpolate()`` again between two runs: the second run starts from the new images, as ASE."""
    ends = adatom_hop()
    mine, reference = band(ends, 5, ours, climb=True), band(ends, 5, AseEMT, climb=True)
    ours_opt, ase_opt = FIRE(mine, logfile=None), AseFIRE(reference, logfile=None)
    ours_opt.run(fmax=0.05, steps=3)
    ase_opt.run(fmax=0.05, steps=3)
    for neb in (mine, reference):
        neb.interpolate()
    ours_opt.run(fmax=0.05, steps=5)
    ase_opt.run(fmax=0.05, steps=5)
    assert_same_band(mine, reference)


def test_neb_is_accepted_as_ase_accepts_it() -> None:
    assert isinstance(band(adatom_hop(), 4, ours), NEB)
