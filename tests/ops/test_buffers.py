"""Reused kernel outputs: a tensor comes back only when no one else holds it, so kept results stay."""

from __future__ import annotations

import numpy as np
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models import LennardJones
from nvalchemi_ase.ops.buffers import Buffers
from tests.structures import argon_bulk


def _take(pool: Buffers) -> torch.Tensor:
    return pool.take((5, 3), torch.float64, torch.device("cpu"))


def test_a_tensor_comes_back_only_when_no_one_else_holds_it():
    pool = Buffers(count=3)
    first = _take(pool)
    address = first.data_ptr()
    del first
    assert _take(pool).data_ptr() == address  # nobody held it: the same tensor
    holders = {
        "a reference": lambda t: t,
        "a view": lambda t: t[1:],
        "a numpy array": lambda t: t.numpy(),
        "a DLPack export": torch.utils.dlpack.to_dlpack,
    }
    for what, make in holders.items():
        tensor = _take(pool)
        address = tensor.data_ptr()
        holder = make(tensor)
        del tensor
        assert all(_take(pool).data_ptr() != address for _ in range(4)), what
        del holder
        taken = [_take(pool) for _ in range(3)]
        assert address in {t.data_ptr() for t in taken}, what  # let go: it comes back
        del taken


def test_a_pool_full_of_held_tensors_makes_new_ones_and_lets_the_oldest_go():
    pool = Buffers(count=2)
    held = [_take(pool) for _ in range(5)]
    assert len({t.data_ptr() for t in held}) == 5
    (ring,) = pool._rings.values()
    assert [id(t) for t in ring] == [id(t) for t in held[3:]]  # the pool keeps the newest two


def test_results_a_user_kept_from_earlier_steps_are_never_written_over():
    atoms = argon_bulk(3, seed=1, rattle=0.05)
    atoms.set_velocities(np.random.default_rng(1).normal(scale=0.02, size=(len(atoms), 3)))
    batch = Batch.from_atoms(atoms, device="cpu")
    engine = NVE(LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, skin=0.3), dt=4.0)
    engine.request_property("energies")  # the kernel's pooled per-atom energies, kept in the batch too
    engine.run(batch, n_steps=3)
    names = ("positions", "velocities", "forces", "energies", "energy")
    kept = {name: getattr(batch, name) for name in names}
    copies = {name: value.clone() for name, value in kept.items()}
    view = batch.forces[:10]
    view_copy = view.clone()
    array = batch.positions.numpy()
    array_copy = array.copy()
    addresses = set()
    for _ in range(12):
        engine.step(batch)
        addresses.add(batch.positions.data_ptr())
    for name in names:
        assert torch.equal(kept[name], copies[name]), name
        assert not torch.equal(getattr(batch, name), copies[name]), name  # the run did move on
    assert torch.equal(view, view_copy) and np.array_equal(array, array_copy)
    assert len(addresses) <= 3  # the engine's own positions take turns in a few tensors
