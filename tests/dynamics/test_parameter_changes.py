"""Every thermostat honours ``temperature`` and ``dt`` assigned after it prepared a batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.md.velocitydistribution import thermalize_momenta

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import (
    Andersen,
    Bussi,
    LangevinBAOAB,
    LangevinBAOABNPT,
    NoseHooverChainNVT,
    NVTBerendsen,
    NVTLangevin,
)
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}

ENGINES = {
    "NVTLangevin": lambda model, dt, t: NVTLangevin(model, dt, t, friction=0.02, seed=3),
    "Bussi": lambda model, dt, t: Bussi(model, dt, t, taut=50.0, seed=3),
    "Andersen": lambda model, dt, t: Andersen(model, dt, t, andersen_prob=0.1, seed=3),
    "NVTBerendsen": lambda model, dt, t: NVTBerendsen(model, dt, t, taut=50.0),
    "LangevinBAOAB": lambda model, dt, t: LangevinBAOAB(model, dt, t, T_tau=40.0, seed=3),
    "NoseHooverChainNVT": lambda model, dt, t: NoseHooverChainNVT(model, dt, t, tdamp=50.0),
    "LangevinBAOABNPT": lambda model, dt, t: LangevinBAOABNPT(
        model, dt, 0.0, temperature=t, T_tau=40.0, P_tau=400.0, seed=3
    ),
}


def _batch() -> Batch:
    systems = [argon_bulk(1, seed=1), argon_bulk(1, seed=2)]
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=80.0, rng=np.random.default_rng(k))
    return Batch.from_atoms(systems, device="cpu")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_temperature_and_dt_assigned_mid_run_take_effect(name):
    make, model = ENGINES[name], LennardJones(**ARGON)
    changed = make(model, 1.0, 40.0)
    changed_batch = _batch()
    changed.run(changed_batch, n_steps=0)  # prepared for the batch at 40 K, 1 fs
    changed.temperature = torch.tensor([150.0, 300.0], dtype=torch.float64)
    changed.dt = 2.0
    changed.run(changed_batch, n_steps=4)
    built = make(model, 2.0, torch.tensor([150.0, 300.0], dtype=torch.float64))
    built_batch = built.run(_batch(), n_steps=4)
    assert torch.equal(changed_batch.positions, built_batch.positions)
    assert torch.equal(changed_batch.velocities, built_batch.velocities)
    untouched = make(model, 1.0, 40.0).run(_batch(), n_steps=4)
    assert not torch.equal(untouched.positions, built_batch.positions)
