"""Small EMT bands for the NEB tests: an Au adatom hop on Al(100) and a surface vacancy jump.

The end states are relaxed once (ASE's EMT and FIRE) and copied for each
test; :func:`band` makes the same band on ASE's EMT or on our batched EMT.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import add_adsorbate, fcc100, fcc111
from ase.calculators.emt import EMT as AseEMT
from ase.constraints import FixAtoms
from ase.mep import NEB
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT

NEB_ATOL = 1e-10
"""Image positions (Å) and energies (eV) against ASE's optimizers on ASE's NEB, step by step."""


def _relaxed(atoms: Atoms) -> Atoms:
    atoms.calc = AseEMT()
    AseFIRE(atoms, logfile=None).run(fmax=0.01)
    atoms.calc = None
    return atoms


@cache
def adatom_hop(size: tuple[int, int, int] = (2, 2, 3)) -> tuple[Atoms, Atoms]:
    """An Au adatom in a hollow site of Al(100) and the next hollow site along x (lower layers fixed)."""
    slab = fcc100("Al", size=size, vacuum=5.0)
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in slab]))
    final = slab.copy()
    final.positions[-1, 0] += slab.cell[0, 0] / size[0]
    return _relaxed(slab), _relaxed(final)


@cache
def vacancy_jump() -> tuple[Atoms, Atoms]:
    """A top-layer Al atom of Al(100) jumping into the vacancy beside it (bottom layer fixed)."""
    slab = fcc100("Al", size=(3, 3, 3), vacuum=5.0)
    slab.set_constraint(FixAtoms(mask=[atom.tag == 3 for atom in slab]))
    top = [atom.index for atom in slab if atom.tag == 1]
    initial, final = slab.copy(), slab.copy()
    del initial[top[4]]
    del final[top[5]]
    return _relaxed(initial), _relaxed(final)


def ours() -> BatchedCalculator:
    return BatchedCalculator(EMT(), device="cpu")


def band(
    ends: tuple[Atoms, Atoms],
    n: int,
    calculator: Callable[[], Any],
    neb_class: type = NEB,
    apply_constraint: bool | None = None,
    **kwargs: Any,
) -> Any:
    """An ``n``-image band between ``ends``, linearly interpolated, each image on its own ``calculator()``.

    ``apply_constraint``: ASE's ``interpolate`` option (False when the
    constraints would move the interpolated images, as FixCom does).
    """
    initial, final = ends
    images = [initial.copy() for _ in range(n - 1)] + [final.copy()]
    for image in images:
        image.calc = calculator()
    kwargs.setdefault("method", "improvedtangent")
    neb = neb_class(images, **kwargs)
    neb.interpolate(apply_constraint=apply_constraint)
    return neb


def assert_same_band(mine: Any, reference: Any, label: str = "") -> None:
    """Every image's positions, the band's energies and residuals equal to ``NEB_ATOL``."""
    for i, (a, b) in enumerate(zip(mine.images, reference.images, strict=True)):
        np.testing.assert_allclose(
            a.positions, b.positions, rtol=0, atol=NEB_ATOL, err_msg=f"{label} image {i}"
        )
    np.testing.assert_allclose(
        mine.energies[1:-1], reference.energies[1:-1], rtol=0, atol=NEB_ATOL, err_msg=f"{label} energies"
    )
    assert mine.imax == reference.imax, label
    np.testing.assert_allclose(
        mine.residuals, reference.residuals, rtol=0, atol=NEB_ATOL, err_msg=f"{label} residuals"
    )


@cache
def fcc_to_hcp_hop() -> tuple[Atoms, Atoms]:
    """An Au adatom from an fcc to an hcp hollow site of Al(111): an oblique cell (lower layers fixed)."""
    initial = fcc111("Al", size=(2, 2, 3), vacuum=5.0)
    final = initial.copy()
    add_adsorbate(initial, "Au", 1.8, "fcc")
    add_adsorbate(final, "Au", 1.8, "hcp")
    for atoms in (initial, final):
        atoms.set_constraint(FixAtoms(mask=[atom.tag > 1 for atom in atoms]))
    return _relaxed(initial), _relaxed(final)


@cache
def rotated_cluster() -> tuple[Atoms, Atoms]:
    """A Cu7 cluster (no cell) whose apex atom moves over, the final state also turned by 25 degrees."""
    base = [[0, 0, 0], [2.5, 0, 0], [1.25, 2.17, 0], [-1.25, 2.17, 0], [-2.5, 0, 0], [1.25, -2.17, 0]]
    initial = Atoms("Cu7", positions=[*base, [0.0, 1.4, 2.0]])
    final = Atoms("Cu7", positions=[*base, [0.0, -1.4, 2.0]])
    initial, final = _relaxed(initial), _relaxed(final)
    final.rotate(25, "z", center="COM")
    return initial, final
