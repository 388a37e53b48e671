"""NEB ``method='spline'`` / ``'string'``, image constraints and NEB-TR against ASE's optimizers."""

from __future__ import annotations

import numpy as np
import pytest
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms, FixCartesian, FixCom
from ase.mep import DyNEB
from ase.optimize import MDMin as AseMDMin

import nvalchemi_ase.models.band_spline as band_spline
from nvalchemi_ase.optimize import FIRE, MDMin
from tests.lookalike.neb_cases import (
    NEB_ATOL,
    adatom_hop,
    assert_same_band,
    band,
    ours,
    rotated_cluster,
    vacancy_jump,
)
from tests.lookalike.test_neb import PAIRS, step_by_step

QUICK = {("FIRE", "spline"), ("FIRE", "string"), ("BFGS", "spline"), ("BFGS", "string")}


@pytest.mark.parametrize(
    ("optimizer", "method"),
    [
        case if case in QUICK else pytest.param(*case, marks=pytest.mark.slow)
        for case in [(optimizer, method) for optimizer in sorted(PAIRS) for method in ("spline", "string")]
    ],
)
def test_adatom_hop_equals_ase(optimizer: str, method: str) -> None:
    ends = adatom_hop()
    kwargs = {"method": method, "climb": True, "k": [0.1, 0.2, 0.15, 0.1, 0.3]}
    step_by_step(band(ends, 6, ours, **kwargs), band(ends, 6, AseEMT, **kwargs), optimizer)


@pytest.mark.parametrize("method", ["spline", "string"])
def test_vacancy_jump_with_fixed_layer_equals_ase(method: str) -> None:
    """Three images (SciPy's parabola through the knots) and six, with a FixAtoms layer."""
    for images, optimizer in [(3, "BFGS"), (6, "LBFGS")]:
        kwargs = {"method": method, "climb": images > 3}
        mine, reference = (
            band(vacancy_jump(), images, ours, **kwargs),
            band(vacancy_jump(), images, AseEMT, **kwargs),
        )
        step_by_step(mine, reference, optimizer, steps=20)


@pytest.mark.parametrize("method", ["spline", "string"])
def test_spline_kept_while_the_band_barely_moves_as_ase(method: str, monkeypatch) -> None:
    """ASE reuses a band's spline until an image moves by 1e-6 Å: tiny MDMin steps see the same forces."""

    def run_beside_ase() -> None:
        mine = band(adatom_hop(), 5, ours, method=method)
        reference = band(adatom_hop(), 5, AseEMT, method=method)
        pairs = zip(
            MDMin(mine, logfile=None, dt=0.0005).irun(fmax=0.01, steps=30),
            AseMDMin(reference, logfile=None, dt=0.0005).irun(fmax=0.01, steps=30),
            strict=True,
        )
        for step, _ in enumerate(pairs):
            assert_same_band(mine, reference, f"step {step}")  # residuals included: the NEB forces

    run_beside_ase()
    monkeypatch.setattr(band_spline, "SPLINE_REUSE", 0.0)  # refit every time: no longer ASE's forces
    with pytest.raises(AssertionError, match="residuals"):
        run_beside_ase()


def test_dyneb_string_equals_ase() -> None:
    """DyNEB's dynamic placement skips the string reparametrisation (as ASE); without it, it applies."""
    kwargs = {"method": "string", "climb": True, "fmax": 0.05, "scale_fmax": 1.0}
    mine, reference = (
        band(adatom_hop(), 7, ours, DyNEB, **kwargs),
        band(adatom_hop(), 7, AseEMT, DyNEB, **kwargs),
    )
    step_by_step(mine, reference, "FIRE", steps=30)
    kwargs = {"method": "spline", "climb": True, "dynamic_relaxation": False}
    mine, reference = (
        band(adatom_hop(), 5, ours, DyNEB, **kwargs),
        band(adatom_hop(), 5, AseEMT, DyNEB, **kwargs),
    )
    step_by_step(mine, reference, "BFGS", steps=20)


def test_identity_precon_is_accepted_and_others_refused() -> None:
    kwargs = {"method": "spline", "climb": True, "precon": "ID"}
    step_by_step(
        band(adatom_hop(), 5, ours, **kwargs), band(adatom_hop(), 5, AseEMT, **kwargs), "FIRE", steps=8
    )
    with pytest.raises(NotImplementedError, match="band 0: precon='Exp' is not supported"):
        FIRE(band(adatom_hop(), 5, ours, method="string", precon="Exp"), logfile=None)


def test_bands_with_spline_methods_equal_each_band_alone() -> None:
    """Spline, string and improved-tangent bands of 3 to 7 images in one batch: each equals itself alone."""

    def bands():
        return [
            band(adatom_hop(), 5, ours, method="spline", climb=True),
            band(vacancy_jump(), 7, ours, method="string"),
            band(adatom_hop((3, 2, 3)), 3, ours, method="spline"),
            band(vacancy_jump(), 4, ours, method="improvedtangent", climb=True),
        ]

    together = bands()
    assert FIRE(together, logfile=None).run(fmax=0.05, steps=150)
    for b, alone in enumerate(bands()):
        assert FIRE(alone, logfile=None).run(fmax=0.05, steps=150)
        assert_same_band(together[b], alone, f"band {b}")


def _constrained(ends, constraint):
    """Copies of ``ends`` carrying their own constraints and ``constraint()``."""
    copies = []
    for atoms in ends:
        atoms = atoms.copy()
        atoms.set_constraint([*atoms.constraints, constraint()] if constraint else [])
        copies.append(atoms)
    return tuple(copies)


def test_image_constraints_equal_ase() -> None:
    """FixCartesian (with FixAtoms) on a slab, FixCom on a cluster: as each image's ASE constraints."""
    adatom = len(adatom_hop()[0]) - 1
    ends = _constrained(adatom_hop(), lambda: FixCartesian([adatom], mask=(False, True, True)))
    kwargs = {"method": "improvedtangent", "climb": True}
    mine, reference = band(ends, 5, ours, **kwargs), band(ends, 5, AseEMT, **kwargs)
    step_by_step(mine, reference, "BFGS", steps=20)
    np.testing.assert_array_equal(
        mine.images[2].positions[adatom, 1:], band(ends, 5, ours).images[2].positions[adatom, 1:]
    )
    cluster = _constrained(rotated_cluster(), None)
    for atoms in cluster:
        atoms.set_constraint(FixCom())
    kwargs = {"method": "spline", "climb": True, "apply_constraint": False}
    mine, reference = band(cluster, 5, ours, **kwargs), band(cluster, 5, AseEMT, **kwargs)
    step_by_step(mine, reference, "FIRE", steps=20)


def test_alignment_with_fixcom_and_dyneb_equals_ase() -> None:
    """NEB-TR with FixCom in every image (the final one too), and under DyNEB (cluster and slab)."""
    cluster = _constrained(rotated_cluster(), None)
    for atoms in cluster:
        atoms.set_constraint(FixCom())
    kwargs = {"remove_rotation_and_translation": True, "climb": True, "apply_constraint": False}
    mine, reference = band(cluster, 5, ours, **kwargs), band(cluster, 5, AseEMT, **kwargs)
    step_by_step(mine, reference, "FIRE", steps=15)
    np.testing.assert_allclose(
        mine.images[-1].positions, reference.images[-1].positions, rtol=0, atol=NEB_ATOL
    )
    kwargs = {"remove_rotation_and_translation": True, "climb": True, "fmax": 0.05, "scale_fmax": 1.0}
    for ends, optimizer in [(rotated_cluster(), "FIRE"), (_constrained(adatom_hop(), None), "BFGS")]:
        mine, reference = band(ends, 7, ours, DyNEB, **kwargs), band(ends, 7, AseEMT, DyNEB, **kwargs)
        step_by_step(mine, reference, optimizer, steps=30)


def test_alignment_with_held_atoms_is_refused() -> None:
    """ASE's NEB-TR with FixAtoms shifts the free atoms at every force call: no defined band to match."""
    with pytest.raises(
        NotImplementedError, match="band 0, image 1: remove_rotation_and_translation=True with FixAtoms"
    ):
        FIRE(band(adatom_hop(), 5, ours, remove_rotation_and_translation=True), logfile=None)


def test_unsupported_image_constraints_raise_naming_the_image() -> None:
    mixed = band(adatom_hop(), 5, ours)
    mixed.images[3].set_constraint([FixAtoms([0]), FixCom()])
    with pytest.raises(NotImplementedError, match="band 0, image 3: FixCom with other constraints"):
        FIRE(mixed, logfile=None)
