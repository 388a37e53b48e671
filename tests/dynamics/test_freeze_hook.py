"""FreezeAtomsHook: frozen atoms do not move (bit-exact), and FIRE with it equals ASE's FIRE with FixAtoms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.constraints import FixAtoms
from ase.md.velocitydistribution import thermalize_momenta
from ase.optimize import FIRE as AseFIRE

from nvalchemi_ase import AtomCategory, Batch, LennardJones
from nvalchemi_ase.dynamics import FIRE, NVE, ConvergenceHook, DynamicsStage
from nvalchemi_ase.dynamics.hooks import FreezeAtomsHook
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
FROZEN = [[0, 3, 7, 12], [1, 2]]


def _systems(rattle: float = 0.15):
    systems = [argon_bulk(2, seed=21, rattle=rattle), argon_bulk(2, seed=22, rattle=rattle)]
    for atoms, frozen, seed in zip(systems, FROZEN, (0, 1), strict=True):
        thermalize_momenta(atoms, temperature_K=80.0, rng=np.random.default_rng(seed))
        atoms.set_constraint(FixAtoms(indices=frozen))
    return systems


def _frozen_mask(batch: Batch) -> torch.Tensor:
    return batch.atom_categories == AtomCategory.FROZEN


def test_fixatoms_becomes_the_frozen_category():
    batch = Batch.from_atoms(_systems(), device="cpu")
    frozen = torch.nonzero(_frozen_mask(batch)).reshape(-1).tolist()
    assert frozen == [0, 3, 7, 12, 32 + 1, 32 + 2]


def test_nve_keeps_frozen_atoms_bit_exact_for_50_steps():
    batch = Batch.from_atoms(_systems(), device="cpu")
    start = batch.positions.clone()
    NVE(LennardJones(**ARGON), dt=2.0, n_steps=50, hooks=[FreezeAtomsHook()]).run(batch)
    frozen = _frozen_mask(batch)
    assert torch.equal(batch.positions[frozen], start[frozen])
    assert torch.equal(batch.velocities[frozen], torch.zeros_like(batch.velocities[frozen]))
    assert torch.equal(batch.forces[frozen], torch.zeros_like(batch.forces[frozen]))
    assert (batch.positions[~frozen] - start[~frozen]).norm(dim=1).min() > 1e-3  # the others moved
    assert batch.to_atoms()[1].constraints[0].get_indices().tolist() == FROZEN[1]


def test_fire_keeps_frozen_atoms_bit_exact():
    batch = Batch.from_atoms(_systems(rattle=0.3), device="cpu")
    start = batch.positions.clone()
    dynamics = FIRE(LennardJones(**ARGON), n_steps=300, hooks=[FreezeAtomsHook()])
    dynamics.run(batch)
    frozen = _frozen_mask(batch)
    assert bool(dynamics.converged.all())
    assert torch.equal(batch.positions[frozen], start[frozen])


@pytest.mark.parametrize("fmax", [0.05, 1e-9])  # converged, and a fixed budget of steps
def test_fire_with_the_hook_equals_ases_fire_with_fixatoms(fmax):
    systems = _systems(rattle=0.3)
    batch = Batch.from_atoms(systems, device="cpu")
    steps = 60
    dynamics = FIRE(
        LennardJones(**ARGON),
        n_steps=steps,
        hooks=[FreezeAtomsHook()],
        convergence_hook=ConvergenceHook.from_fmax(fmax),
    )
    dynamics.run(batch)
    for atoms, ours in zip(systems, batch.to_atoms(), strict=True):
        atoms.calc = AseLennardJones(**ARGON)
        optimizer = AseFIRE(atoms, logfile=None)
        optimizer.run(fmax=fmax, steps=steps)
        np.testing.assert_allclose(ours.positions, atoms.positions, rtol=0, atol=1e-10)
        if fmax == 0.05:
            assert optimizer.nsteps < steps  # both converged, not merely stopped
    assert dynamics.step_count <= steps


def test_without_zero_forces_the_forces_stay_but_positions_do_not_move():
    batch = Batch.from_atoms(_systems(), device="cpu")
    start = batch.positions.clone()
    NVE(LennardJones(**ARGON), dt=2.0, n_steps=5, hooks=[FreezeAtomsHook(zero_forces=False)]).run(batch)
    frozen = _frozen_mask(batch)
    assert torch.equal(batch.positions[frozen], start[frozen])
    assert batch.forces[frozen].norm(dim=1).min() > 0.0
    assert torch.equal(batch.velocities[frozen], torch.zeros_like(batch.velocities[frozen]))


def test_other_category_and_stage_order():
    batch = Batch.from_atoms([argon_bulk(2, seed=5)], device="cpu")
    categories = batch.atom_categories.clone()
    categories[[4, 5]] = 2
    batch.atom_categories = categories
    start = batch.positions.clone()
    seen = []

    class Probe:
        stage, frequency = DynamicsStage.AFTER_PRE_UPDATE, 1

        def __call__(self, ctx, stage):
            seen.append(ctx.batch.velocities[[4, 5]].abs().max().item())

    hook = FreezeAtomsHook(category=2)
    assert hook.stages == (
        DynamicsStage.BEFORE_PRE_UPDATE,
        DynamicsStage.BEFORE_COMPUTE,
        DynamicsStage.AFTER_COMPUTE,
        DynamicsStage.AFTER_POST_UPDATE,
    )
    NVE(LennardJones(**ARGON), dt=2.0, n_steps=10, hooks=[hook, Probe()]).run(batch)
    assert torch.equal(batch.positions[[4, 5]], start[[4, 5]]) and seen == [0.0] * 10
    assert not torch.equal(batch.positions[[0, 1]], start[[0, 1]])


def test_freeze_constructor_errors():
    with pytest.raises(ValueError, match="frequency"):
        FreezeAtomsHook(frequency=2)
    with pytest.raises(TypeError, match="category"):
        FreezeAtomsHook(category="frozen")
    with pytest.raises(TypeError, match="zero_forces"):
        FreezeAtomsHook(zero_forces=1)


@pytest.mark.gpu
def test_frozen_atoms_stay_bit_exact_on_cuda():
    batch = Batch.from_atoms(_systems(), device="cuda")
    start = batch.positions.clone()
    NVE(LennardJones(**ARGON), dt=2.0, n_steps=20, hooks=[FreezeAtomsHook()]).run(batch)
    frozen = _frozen_mask(batch)
    assert torch.equal(batch.positions[frozen], start[frozen])
    assert not bool(batch.velocities[frozen].any())


def test_langevin_with_frozen_atoms_equals_ase_langevin_with_fixatoms():
    """The thermostat's random kick must not move frozen atoms before the force call (ASE's set_positions)."""
    import warnings

    import numpy as np
    from ase import units
    from ase.calculators.lj import LennardJones as AseLennardJones
    from ase.constraints import FixAtoms
    from ase.md.langevin import Langevin

    from nvalchemi_ase.dynamics import NVTLangevin
    from nvalchemi_ase.dynamics.noise import NumpyNoise
    from tests.structures import argon_bulk

    atoms = argon_bulk(2, seed=3)
    atoms.set_constraint(FixAtoms(indices=list(range(8))))
    batch = Batch.from_atoms(atoms, device="cpu")
    engine = NVTLangevin(
        LennardJones(**ARGON),
        dt=2.0,
        temperature=200.0,
        friction=0.02,
        hooks=[FreezeAtomsHook()],
        noise=NumpyNoise([np.random.default_rng(7)]),
    )
    engine.run(batch, n_steps=60)
    reference = atoms.copy()
    reference.calc = AseLennardJones(**ARGON)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        md = Langevin(
            reference,
            2.0 * units.fs,
            temperature_K=200.0,
            friction=0.02 / units.fs,
            fixcm=False,
            rng=np.random.default_rng(7),
        )
    md.run(60)
    np.testing.assert_allclose(batch.positions.numpy(), reference.positions, rtol=0, atol=1e-10)
    np.testing.assert_allclose(batch.velocities.numpy(), reference.get_velocities(), rtol=0, atol=1e-10)
