"""Masked updates hold references, not copies: no engine writes into a field; non-members stay put."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.md.velocitydistribution import thermalize_momenta

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import (
    BFGS,
    FIRE,
    LBFGS,
    NVE,
    Andersen,
    Bussi,
    LangevinBAOAB,
    MDMin,
    NoseHooverChainNVT,
    NVTBerendsen,
    NVTLangevin,
)
from nvalchemi_ase.models import LennardJones
from tests.structures import argon_bulk

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}

ENGINES = {
    "NVE": lambda m: NVE(m, dt=1.0),
    "NVTLangevin": lambda m: NVTLangevin(m, 1.0, 100.0, friction=0.02, seed=1),
    "Andersen": lambda m: Andersen(m, 1.0, 100.0, andersen_prob=0.2, seed=1),
    "Bussi": lambda m: Bussi(m, 1.0, 100.0, taut=20.0, seed=1),
    "NVTBerendsen": lambda m: NVTBerendsen(m, 1.0, 100.0, taut=20.0),
    "LangevinBAOAB": lambda m: LangevinBAOAB(m, 1.0, 100.0, T_tau=20.0, seed=1),
    "NoseHooverChainNVT": lambda m: NoseHooverChainNVT(m, 1.0, 100.0, tdamp=20.0, frozen_momenta=True),
    "FIRE": lambda m: FIRE(m),
    "BFGS": lambda m: BFGS(m),
    "LBFGS": lambda m: LBFGS(m),
    "MDMin": lambda m: MDMin(m),
}


def _batch() -> Batch:
    systems = [argon_bulk(1, seed=1), argon_bulk(2, seed=2), argon_bulk(1, seed=3)]
    for k, atoms in enumerate(systems):
        thermalize_momenta(atoms, temperature_K=50.0, rng=np.random.default_rng(k))
    return Batch.from_atoms(systems, device="cpu")


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_updates_replace_fields_and_masked_ones_leave_the_others_bit_for_bit(name):
    engine = ENGINES[name](LennardJones(**ARGON))
    batch = engine.prime(_batch())
    for _ in range(2):  # a started optimizer state too
        held = engine.hold(batch)
        copies = {key: value.clone() for key, value in held.items()}
        engine.pre_update(batch)
        engine.compute(batch)
        engine.post_update(batch)
        for key, value in held.items():
            assert torch.equal(value, copies[key]), f"{name} wrote into {key}"
    members = torch.tensor([True, False, True])
    before = {key: value.clone() for key, value in engine.hold(batch).items()}
    engine.masked_pre_update(batch, members)
    engine.compute(batch)
    engine.masked_post_update(batch, members)
    middle = slice(int(batch.ptr[1]), int(batch.ptr[2]))
    for key, value in before.items():
        now = getattr(batch, key)
        rows = middle if now.shape[0] == batch.num_nodes else slice(1, 2)
        assert torch.equal(now[rows], value[rows]), f"{name}: {key} of a non-member changed"
    assert not torch.equal(batch.positions[: int(batch.ptr[1])], before["positions"][: int(batch.ptr[1])])
