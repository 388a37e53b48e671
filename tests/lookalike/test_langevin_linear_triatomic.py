"""``Langevin`` with ``FixLinearTriatomic``: ASE's noise and force redistribution, on the host."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.constraints import FixLinearTriatomic
from ase.md.langevin import Langevin as AseLangevin

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase._lookalike import HostConstraintHook
from nvalchemi_ase.md import Langevin
from nvalchemi_ase.md.langevin import _RedistributedNoise
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import assert_same_state

DT = 1.0 * units.fs
STEPS = 50
LJ = {"sigma": 1.2, "epsilon": 0.01, "rc": 4.5, "smooth": True}
PARAMS = {"temperature_K": 300.0, "friction": 0.02 / units.fs, "fixcm": False}
TRIPLES = [(0, 1, 2), (3, 4, 5), (8, 6, 7)]
"""O-C-O as (n, o, m); the third molecule lists its atoms as C, O, O with the triple in another order."""


def _co2_box(constrained: bool, seed: int = 0) -> Atoms:
    """Three CO2 molecules (bond 1.16 Å) in a periodic 10 Å box, with small random velocities."""
    rng = np.random.default_rng(seed)
    centres = np.array([[2.5, 2.5, 2.5], [6.5, 3.0, 6.0], [4.0, 7.0, 3.5]]) + rng.uniform(-0.3, 0.3, (3, 3))
    symbols, positions = [], []
    for k, centre in enumerate(centres):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        molecule = [centre - 1.16 * axis, centre, centre + 1.16 * axis]
        if k == 2:  # C first: the triple (8, 6, 7) is (O, C, O)
            symbols += ["C", "O", "O"]
            positions += [molecule[1], molecule[2], molecule[0]]
        else:
            symbols += ["O", "C", "O"]
            positions += molecule
    atoms = Atoms(symbols, positions=positions, cell=[10.0, 10.0, 10.0], pbc=True)
    if constrained:
        atoms.set_constraint(FixLinearTriatomic(triples=TRIPLES))
    atoms.set_velocities(rng.normal(scale=0.005, size=(len(atoms), 3)))
    atoms.set_momenta(atoms.get_momenta())  # momenta obeying the constraints, as ASE would hold them
    return atoms


def _ours(atoms: Atoms, calc: BatchedCalculator | None = None) -> Atoms:
    copy = atoms.copy()
    copy.calc = calc if calc is not None else BatchedCalculator(LennardJones(**LJ), device="cpu")
    return copy


def _theirs(atoms: Atoms) -> Atoms:
    copy = atoms.copy()
    copy.calc = AseLennardJones(**LJ)
    return copy


def _assert_linear(atoms: Atoms, reference: Atoms) -> None:
    """Each triple stays straight, with the bond lengths it started with (to ASE's RATTLE tolerance)."""
    for n, o, m in TRIPLES:
        on, om = (
            atoms.get_distance(o, n, vector=True, mic=True),
            atoms.get_distance(o, m, vector=True, mic=True),
        )
        cosine = np.dot(on, om) / (np.linalg.norm(on) * np.linalg.norm(om))
        assert cosine == pytest.approx(-1.0, abs=1e-10)
        np.testing.assert_allclose(
            [np.linalg.norm(on), np.linalg.norm(om)],
            [reference.get_distance(o, n, mic=True), reference.get_distance(o, m, mic=True)],
            rtol=0,
            atol=1e-8,
        )


def test_linear_triatomic_langevin_equals_ase():
    atoms = _co2_box(constrained=True)
    mine, reference = _ours(atoms), _theirs(atoms)
    dyn = Langevin(mine, DT, rng=np.random.default_rng(7), **PARAMS)
    assert any(isinstance(hook, HostConstraintHook) for hook in dyn.engine.hooks)
    dyn.run(STEPS)
    AseLangevin(reference, DT, rng=np.random.default_rng(7), **PARAMS).run(STEPS)
    assert_same_state(mine, reference, "FixLinearTriatomic")
    _assert_linear(mine, atoms)
    assert np.abs(mine.positions - atoms.positions).max() > 1e-3  # it did move


def test_a_list_with_and_without_the_constraint_equals_ase_per_system():
    systems = [_co2_box(constrained=True, seed=1), _co2_box(constrained=False, seed=2)]
    calc = BatchedCalculator(LennardJones(**LJ), device="cpu")
    mine = [_ours(atoms, calc) for atoms in systems]
    dyn = Langevin(mine, DT, rng=[np.random.default_rng(11), np.random.default_rng(12)], **PARAMS)
    assert isinstance(dyn.engine.noise, _RedistributedNoise)
    assert dyn.engine.noise.systems == [0]
    dyn.run(STEPS)
    for b, atoms in enumerate(systems):
        reference = _theirs(atoms)
        AseLangevin(reference, DT, rng=np.random.default_rng(11 + b), **PARAMS).run(STEPS)
        assert_same_state(mine[b], reference, f"system {b}")
    _assert_linear(mine[0], systems[0])


def test_systems_without_the_constraint_keep_the_device_path():
    mine = _ours(_co2_box(constrained=False))
    dyn = Langevin(mine, DT, rng=np.random.default_rng(0), **PARAMS)
    assert not isinstance(dyn.engine.noise, _RedistributedNoise)
    assert not any(isinstance(hook, HostConstraintHook) for hook in dyn.engine.hooks)


def test_a_torch_generator_redistributes_the_device_noise_on_the_host():
    """Device draws (not ASE's numbers): still redistributed on the host; triples stay linear."""
    atoms = _co2_box(constrained=True)
    mine = _ours(atoms)
    generator = torch.Generator().manual_seed(0)
    dyn = Langevin(mine, DT, rng=generator, **PARAMS)
    xi = torch.randn((len(atoms), 3), generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    expected = xi.numpy().copy()
    atoms.constraints[0].redistribute_forces_md(atoms, expected, rand=True)
    assert np.abs(expected - xi.numpy()).max() > 0.1  # the redistribution changes the noise
    redistributed = dyn.engine.noise.redistribute(xi)
    np.testing.assert_allclose(redistributed.numpy(), expected, rtol=0, atol=1e-15)
    dyn.run(STEPS)
    _assert_linear(mine, atoms)
