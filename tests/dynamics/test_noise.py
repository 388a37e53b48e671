"""The noise sources: counter-based torch noise is batch independent; numpy noise keeps ASE's order."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.noise import CounterNoise, Draw, NumpyNoise
from tests.structures import argon_bulk

DRAWS = [
    Draw("standard_normal", per_atom=True, shape=(3,)),
    Draw("random", per_atom=False, shape=(3,)),
    Draw("standard_normal", per_atom=False),
]


def _batch(repeats, ids) -> Batch:
    batch = Batch.from_atoms([argon_bulk(r, seed=k) for k, r in enumerate(repeats)], device="cpu")
    batch.system_id[:] = torch.tensor(ids)
    return batch


def test_a_systems_draws_do_not_depend_on_its_batch_mates_or_slot():
    alone, shared = _batch([2], [5]), _batch([1, 3, 2], [9, 2, 5])
    for _ in range(3):  # the counters advance alike
        mine, theirs = CounterNoise(11).draw(alone, DRAWS), CounterNoise(11).draw(shared, DRAWS)
    assert torch.equal(mine[0], theirs[0][shared.ptr[2] :])
    assert torch.equal(mine[1][0], theirs[1][2]) and torch.equal(mine[2][0], theirs[2][2])
    assert alone.noise_counter.tolist() == [3]


def test_draws_differ_by_seed_step_array_and_system():
    batch = _batch([1, 1], [0, 1])
    source = CounterNoise(0)
    first, second = source.draw(batch, DRAWS[:1] * 2), source.draw(batch, DRAWS[:1])
    values = [
        first[0][:4],
        first[0][4:],
        first[1][:4],
        second[0][:4],
        CounterNoise(1).draw(batch, DRAWS)[0][:4],
    ]
    for a in range(len(values)):
        for b in range(a):
            assert not torch.equal(values[a], values[b])


def test_moments():
    batch = _batch([3] * 8, list(range(8)))
    shape = torch.full((8,), 40.5, dtype=torch.float64)
    source = CounterNoise(3)
    normals, uniforms, gammas = [], [], []
    for _ in range(20):
        n, u, g = source.draw(
            batch,
            [DRAWS[0], Draw("random", True, (3,)), Draw("standard_gamma", False, argument=shape)],
        )
        normals.append(n), uniforms.append(u), gammas.append(g)
    n, u, g = torch.cat(normals), torch.cat(uniforms), torch.cat(gammas)
    assert n.mean().item() == pytest.approx(0.0, abs=0.02) and n.var().item() == pytest.approx(1.0, abs=0.03)
    assert u.min().item() >= 0.0 and u.max().item() < 1.0 and u.mean().item() == pytest.approx(0.5, abs=0.01)
    assert g.mean().item() == pytest.approx(40.5, rel=0.05) and g.var().item() == pytest.approx(40.5, rel=0.4)


def test_numpy_noise_draws_each_systems_arrays_in_turn():
    batch = _batch([1, 2], [0, 1])
    drawn = NumpyNoise(np.random.default_rng(4)).draw(batch, DRAWS[:2])
    rng = np.random.default_rng(4)
    expected = [(rng.standard_normal((n, 3)), rng.random(3)) for n in batch.counts]
    np.testing.assert_array_equal(drawn[0].numpy(), np.concatenate([e[0] for e in expected]))
    np.testing.assert_array_equal(drawn[1].numpy(), np.stack([e[1] for e in expected]))


@pytest.mark.parametrize("counted", [True, False])
def test_the_cpu_kernels_draw_the_torch_sources_numbers(monkeypatch, counted):
    """The same hashes, so the same numbers bit for bit (uniforms, normals, gamma), and the same counters."""
    from nvalchemi_ase.dynamics import noise

    draws = [*DRAWS, Draw("normal", per_atom=True, shape=(2, 3)), Draw("standard_gamma", True, (), None)]
    results = {}
    for way in ("kernels", "torch"):
        monkeypatch.setattr(noise, "_on_kernels", lambda device, way=way: way == "kernels")
        batch = _batch([1, 2, 1], [11, 4, 2**40])
        gamma = Draw("standard_gamma", True, (), torch.tensor([1.5, 4.0, 2.5], dtype=torch.float64))
        source = CounterNoise(seed=-12345, counter=noise.COUNTER_FIELD if counted else None)
        first = source.draw(batch, [*draws[:-1], gamma])
        second = source.draw(batch, draws[:2])
        counter = batch.noise_counter.clone() if counted else None
        results[way] = (first + second, counter)
    (ours, our_counter), (theirs, their_counter) = results["kernels"], results["torch"]
    if counted:
        assert torch.equal(our_counter, their_counter) and our_counter.tolist() == [2, 2, 2]
    for index, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b), index
    assert torch.equal(ours[0], ours[5]) is not counted  # a counted source draws new numbers each call


def test_a_new_seed_set_on_the_source_is_the_one_drawn_with():
    batch = _batch([1, 1], [0, 1])
    source = CounterNoise(seed=1, counter=None)
    first = source.draw(batch, DRAWS[:1])[0].clone()
    source.seed = 2  # a user may reseed between runs
    assert torch.equal(
        source.draw(batch, DRAWS[:1])[0], CounterNoise(seed=2, counter=None).draw(batch, DRAWS[:1])[0]
    )
    assert not torch.equal(source.draw(batch, DRAWS[:1])[0], first)
