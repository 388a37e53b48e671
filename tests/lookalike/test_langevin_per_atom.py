"""Per-atom ``temperature_K`` and ``friction``: the Langevin look-alike and NVTLangevin, against ASE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import units
from ase.md.langevin import Langevin as AseLangevin

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVTLangevin
from nvalchemi_ase.md import Langevin
from nvalchemi_ase.models import LennardJones
from tests.lookalike.common import ARGON, assert_same_state, ours, theirs, with_velocities
from tests.structures import argon_bulk

DT = 2.0 * units.fs
STEPS = 50


def _column(count: int, low: float, high: float) -> np.ndarray:
    """``(count, 1)``: one value per atom, all different."""
    return np.linspace(low, high, count).reshape(-1, 1)


def _ase_alone(atoms, temperature_K, friction, seed):
    """ASE's own Langevin on a copy of ``atoms`` (ASE's LennardJones), run ``STEPS`` steps."""
    reference = theirs(atoms)
    dyn = AseLangevin(
        reference,
        DT,
        temperature_K=temperature_K,
        friction=friction,
        fixcm=False,
        rng=np.random.default_rng(seed),
    )
    dyn.run(STEPS)
    return reference, dyn


def test_one_system_with_per_atom_arrays_equals_ase():
    atoms = with_velocities([argon_bulk(2, seed=3)], seed=4)[0]
    temperature_K = _column(len(atoms), 40.0, 400.0)
    friction = _column(len(atoms), 0.002, 0.05)[::-1] / units.fs
    mine = ours(atoms)
    dyn = Langevin(
        mine, DT, temperature_K=temperature_K, friction=friction, fixcm=False, rng=np.random.default_rng(7)
    )
    dyn.run(STEPS)
    reference, ase_dyn = _ase_alone(atoms, temperature_K, friction, 7)
    assert_same_state(mine, reference)
    ours_dict, theirs_dict = dyn.todict(), ase_dyn.todict()
    assert ours_dict.keys() == theirs_dict.keys()
    for key in ("temperature_K", "friction"):
        np.testing.assert_array_equal(ours_dict[key], theirs_dict[key])
        assert ours_dict[key].shape == (len(atoms), 1)


def test_set_friction_and_temperature_per_atom_between_runs_equal_ase():
    atoms = with_velocities([argon_bulk(1, seed=1)], seed=2)[0]
    mine = ours(atoms)
    params = {"temperature_K": 100.0, "friction": 0.01 / units.fs, "fixcm": False}
    dyn = Langevin(mine, DT, rng=np.random.default_rng(5), **params)
    reference = theirs(atoms)
    ase_dyn = AseLangevin(reference, DT, rng=np.random.default_rng(5), **params)
    for run in (dyn, ase_dyn):
        run.run(10)
        run.set_friction(_column(len(atoms), 0.005, 0.04) / units.fs)
        run.set_temperature(temperature_K=_column(len(atoms), 300.0, 30.0))
        run.run(STEPS - 10)
    assert_same_state(mine, reference)


def test_a_list_with_per_atom_entries_equals_ase_on_each_system_alone():
    systems = with_velocities([argon_bulk(1, seed=6), argon_bulk(2, seed=8)], seed=9)
    counts = [len(atoms) for atoms in systems]
    temperatures = [_column(counts[0], 60.0, 250.0), _column(counts[1], 350.0, 20.0)]
    frictions = [
        0.02 / units.fs,
        _column(counts[1], 0.001, 0.03) / units.fs,
    ]  # a scalar entry, an array entry
    references = [
        _ase_alone(atoms, temperatures[b], frictions[b], 20 + b)[0] for b, atoms in enumerate(systems)
    ]
    concatenated = {  # the same values as (N, 1) arrays over all atoms, in system order
        "temperature_K": np.concatenate(temperatures),
        "friction": np.concatenate(
            [np.broadcast_to(f, (n, 1)) for f, n in zip(frictions, counts, strict=True)]
        ),
    }
    for params in ({"temperature_K": temperatures, "friction": frictions}, concatenated):
        calc = BatchedCalculator(LennardJones(**ARGON), device="cpu")
        mine = [ours(atoms, calc) for atoms in systems]
        rngs = [np.random.default_rng(20 + b) for b in range(len(systems))]
        Langevin(mine, DT, fixcm=False, rng=rngs, **params).run(STEPS)
        for b, reference in enumerate(references):
            assert_same_state(mine[b], reference, f"system {b}")


def _engine_run(temperature, friction) -> Batch:
    systems = with_velocities([argon_bulk(1, seed=k) for k in range(2)] + [argon_bulk(2, seed=5)], seed=3)
    batch = Batch.from_atoms(systems, device="cpu")
    NVTLangevin(LennardJones(**ARGON), dt=2.0, temperature=temperature, friction=friction, seed=11).run(
        batch, n_steps=STEPS
    )
    return batch


def _per_atom(per_system: torch.Tensor) -> torch.Tensor:
    return per_system.repeat_interleave(torch.tensor([4, 4, 32]))


@pytest.mark.parametrize(
    ("temperature", "friction"),
    [
        (
            torch.tensor([50.0, 120.0, 300.0], dtype=torch.float64),
            torch.tensor([0.01, 0.02, 0.005], dtype=torch.float64),
        ),
        (150.0, 0.02),
    ],
)
def test_engine_per_atom_values_equal_to_per_system_ones_give_the_same_bits(temperature, friction):
    expected = _engine_run(temperature, friction)
    as_tensor = lambda value: torch.as_tensor(value, dtype=torch.float64).expand(3)  # noqa: E731
    got = _engine_run(_per_atom(as_tensor(temperature)), _per_atom(as_tensor(friction)))
    assert torch.equal(got.positions, expected.positions)
    assert torch.equal(got.velocities, expected.velocities)


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("temperature", torch.full((41,), 100.0), "temperature has 41 values for 3 systems and 40 atoms"),
        ("friction", torch.full((40, 1), 0.01), r"friction has shape \(40, 1\)"),
    ],
)
def test_engine_rejects_wrong_lengths(name, value, match):
    batch = Batch.from_atoms([argon_bulk(1), argon_bulk(1), argon_bulk(2)], device="cpu")
    params = {"temperature": 100.0, "friction": 0.01, name: value}
    with pytest.raises(ValueError, match=match):
        NVTLangevin(LennardJones(**ARGON), dt=1.0, **params).run(batch, n_steps=1)


@pytest.mark.parametrize("name", ["temperature_K", "friction"])
def test_an_n_array_fails_in_ase_and_raises_a_value_error_naming_the_parameter(name):
    atoms = argon_bulk(1)
    params = {"temperature_K": 100.0, "friction": 0.01 / units.fs, "fixcm": False}
    params[name] = params[name] * np.linspace(1.0, 2.0, len(atoms))  # (N,), not (N, 1)
    with pytest.raises(ValueError, match="broadcast"):  # ASE: at the first step, numpy's message
        AseLangevin(theirs(atoms), DT, **params).run(1)
    with pytest.raises(ValueError, match=rf"^{name}: .*\(4,\).*\(4, 1\)"):
        Langevin(ours(atoms), DT, **params)


def test_a_list_entry_of_the_wrong_length_names_its_system():
    systems = [ours(argon_bulk(1)), ours(argon_bulk(1))]
    with pytest.raises(ValueError, match=r"^temperature_K\[1\]: .*\(5, 1\)"):
        Langevin(systems, DT, temperature_K=[100.0, _column(5, 50.0, 90.0)], friction=0.01, fixcm=False)


def test_per_direction_values_work_in_ase_but_are_not_supported():
    atoms = argon_bulk(1)
    friction = np.array([0.01, 0.02, 0.03]) / units.fs  # (3,): one per direction in ASE
    AseLangevin(theirs(atoms), DT, temperature_K=100.0, friction=friction, fixcm=False).run(1)
    with pytest.raises(NotImplementedError, match="per direction"):
        Langevin(ours(atoms), DT, temperature_K=100.0, friction=friction, fixcm=False)
