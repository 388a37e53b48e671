"""Non-finite positions or cells give NaN results for their system, from every model; NaN checks stop runs."""

from __future__ import annotations

import math

import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.dynamics.hooks import NaNDetectorHook
from nvalchemi_ase.hooks.safety import NonFiniteError
from nvalchemi_ase.models import EMT, ASECalculatorModel, LennardJones, Morse, evaluate
from tests.models.test_autograd import lj_model

ARGON_LJ = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}
MODELS = {
    "lj-shifted-kernel": lambda: LennardJones(**ARGON_LJ),
    "lj-smooth-torch": lambda: LennardJones(**ARGON_LJ, smooth=True, use_kernel=False),
    "morse": lambda: Morse(epsilon=0.0104, rho0=6.0, r0=3.8, rcut1=1.9, rcut2=2.2),
    "emt": lambda: EMT(),
    "ase-adapter": lambda: ASECalculatorModel(AseEMT()),
    "autograd": lambda: lj_model(),
}


def _batch(bad_atoms: slice, value: float = math.nan) -> Batch:
    """Two copper systems (EMT knows copper), system 0's ``bad_atoms`` set to ``value``."""
    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=1)
    batch = Batch.from_atoms([atoms, atoms.copy()], device="cpu")
    positions = batch.positions.clone()
    positions[bad_atoms, 0] = value
    batch.positions = positions
    return batch


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    ("bad_atoms", "value"), [(slice(0, 1), math.nan), (slice(0, 32), math.nan), (slice(5, 6), math.inf)]
)
def test_a_nonfinite_system_gets_nan_results_and_the_others_are_untouched(name, bad_atoms, value):
    model = MODELS[name]()
    properties = ("energy", "forces", "stress")
    clean = evaluate(model, _batch(slice(0, 0)), properties)
    outputs = evaluate(model, _batch(bad_atoms, value), properties)
    assert torch.isnan(outputs["energy"][0]).all()
    assert torch.isnan(outputs["forces"][bad_atoms]).all()
    if not getattr(model, "propagates_nonfinite", False):  # the fused kernels poison the bad atoms only
        assert torch.isnan(outputs["forces"][:32]).all()  # every atom of the system
    assert not torch.isfinite(outputs["stress"][0]).all()
    for key in properties:  # system 1 (atoms 32..63) exactly as without the bad system
        rows = slice(32, 64) if key == "forces" else slice(1, 2)
        assert torch.equal(outputs[key][rows], clean[key][rows]), key


def test_a_nonfinite_cell_poisons_its_system():
    batch = _batch(slice(0, 0))
    cell = batch.cell.clone()
    cell[1, 2, 2] = math.inf
    batch.cell = cell
    outputs = LennardJones(**ARGON_LJ)(batch, ("energy", "forces"))
    assert torch.isfinite(outputs["energy"][0]).all() and torch.isnan(outputs["energy"][1]).all()
    assert torch.isfinite(outputs["forces"][:32]).all() and torch.isnan(outputs["forces"][32:]).all()


class _BareModel:
    """A protocol model that is not one of ours: it ignores non-finite atoms."""

    cutoff = 0.0
    implemented_properties = ("energy", "forces")

    def __call__(self, batch, properties=("energy", "forces")):
        return {
            "energy": torch.zeros(batch.num_graphs, 1, dtype=batch.dtype),
            "forces": torch.zeros_like(batch.positions),
        }


def test_evaluate_poisons_any_protocol_model():
    outputs = evaluate(_BareModel(), _batch(slice(3, 4)))
    assert torch.isnan(outputs["energy"][0]).all() and outputs["energy"][1].item() == 0.0
    assert torch.isnan(outputs["forces"][:32]).all() and not outputs["forces"][32:].any()


def test_issue_reproducer_nan_detector_stops_nve_naming_the_system():
    batch = Batch.from_atoms(
        [bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2) for _ in range(3)], device="cpu"
    )
    positions = batch.positions.clone()
    positions[40, 0] = math.nan  # system 1
    batch.positions = positions
    dynamics = NVE(LennardJones(**ARGON_LJ, smooth=True), dt=1.0, hooks=[NaNDetectorHook()])
    with pytest.raises(NonFiniteError, match=r"system\(s\) \[1\]"):
        dynamics.run(batch, 5)
    assert torch.isnan(batch.energy[1]).all() and torch.isfinite(batch.energy[[0, 2]]).all()


def test_a_run_that_blows_up_midway_is_caught():
    batch = Batch.from_atoms([bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)], device="cpu")
    dynamics = NVE(LennardJones(**ARGON_LJ, smooth=True), dt=1.0, hooks=[NaNDetectorHook()])
    dynamics.run(batch, 2)
    velocities = batch.velocities.clone()
    velocities[3] = math.inf  # what a diverging thermostat or integrator leaves behind
    batch.velocities = velocities
    with pytest.raises(NonFiniteError, match=r"at step 2 .*\n.*system\(s\) \[0\]"):
        dynamics.run(batch, 3)
