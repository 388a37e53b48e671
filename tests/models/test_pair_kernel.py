"""The fused pair kernel and the plain torch path give the same numbers."""

from __future__ import annotations

import copy

import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import LennardJones, Morse, evaluate
from tests.structures import ragged_systems

MODELS = [
    lambda kernel: LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, use_kernel=kernel),
    lambda kernel: LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, ro=6.0, smooth=True, use_kernel=kernel),
    lambda kernel: Morse(epsilon=0.0104, rho0=6.0, r0=3.8, use_kernel=kernel),
]
ALL = ("energy", "forces", "stress", "energies")


@pytest.mark.parametrize("make", MODELS, ids=["lj-shifted", "lj-smooth", "morse"])
def test_kernel_equals_torch_path(make):
    batch = Batch.from_atoms(ragged_systems(seed=4), device="cpu")
    fused = evaluate(make(True), batch, ALL)
    plain = evaluate(make(False), batch, ALL)
    for key in ("energy", "forces", "energies"):
        torch.testing.assert_close(fused[key], plain[key], rtol=1e-12, atol=1e-14)
    finite = torch.isfinite(plain["stress"])
    assert torch.equal(finite, torch.isfinite(fused["stress"]))
    torch.testing.assert_close(fused["stress"][finite], plain["stress"][finite], rtol=1e-12, atol=1e-16)


@pytest.mark.parametrize("make", MODELS, ids=["lj-shifted", "lj-smooth", "morse"])
def test_float32_batches_get_float32_results_close_to_float64(make):
    systems = ragged_systems(seed=4)
    reference = evaluate(make(False), Batch.from_atoms(systems, device="cpu"))
    single = evaluate(make(True), Batch.from_atoms(systems, device="cpu", dtype=torch.float32))
    assert single["forces"].dtype == torch.float32 and single["energy"].dtype == torch.float32
    scale = reference["forces"].abs().max()
    torch.testing.assert_close(single["forces"].double(), reference["forces"], rtol=1e-4, atol=1e-5 * scale)
    torch.testing.assert_close(single["energy"].double(), reference["energy"], rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_kernel_on_cuda_equals_cpu():
    systems = ragged_systems(seed=5)
    gpu = evaluate(MODELS[1](True), Batch.from_atoms(systems, device="cuda"))
    cpu = evaluate(MODELS[1](True), Batch.from_atoms(systems, device="cpu"))
    torch.testing.assert_close(gpu["forces"].cpu(), cpu["forces"], rtol=1e-12, atol=1e-14)


@pytest.fixture
def torch_threads():
    """Restores torch's thread count after a test changes it."""
    saved = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(saved)


@pytest.mark.parametrize("half", [False, True], ids=["full-list", "half-list"])
def test_cpu_threads_split_the_rows_without_changing_a_bit(monkeypatch, torch_threads, half):
    from nvalchemi_ase.models import pair_kernel
    from nvalchemi_ase.ops import kernel_threads, warp_launch

    monkeypatch.setattr(pair_kernel, "HALF_LIST_ON_CPU", half)
    batch = Batch.from_atoms(ragged_systems(seed=6), device="cpu")
    model = MODELS[1](True)
    torch_threads(1)
    alone = evaluate(model, batch, ALL)
    pools = []

    real_workers = kernel_threads.workers

    def counted_workers(count):
        pools.append(count)
        return real_workers(count)

    monkeypatch.setattr(warp_launch, "ROWS_PER_THREAD", 4)
    monkeypatch.setattr(kernel_threads, "workers", counted_workers)
    torch_threads(3)
    split = evaluate(model, batch, ALL)
    # the rows really were split over three launches: two workers and the calling thread (a half list,
    # made in the first call, is split at system boundaries)
    assert pools == [2]
    for key in ("energy", "forces", "energies", "stress"):
        assert torch.equal(split[key].nan_to_num(), alone[key].nan_to_num()), key


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "torch"])
def test_without_stress_the_same_energies_and_forces(use_kernel):
    batch = Batch.from_atoms(ragged_systems(seed=7), device="cpu")
    model = MODELS[0](use_kernel)
    full = evaluate(model, batch, ALL)
    lean = evaluate(model, batch, ("energy", "forces", "energies"))
    assert "stress" not in lean
    for key in ("energy", "forces", "energies"):
        assert torch.equal(lean[key], full[key]), key


@pytest.mark.parametrize("make", MODELS, ids=["lj-shifted", "lj-smooth", "morse"])
def test_image_vectors_made_once_give_the_bits_of_those_made_in_the_kernel(make):
    from nvalchemi_ase.models.pair_kernel import pair_sums

    batch = Batch.from_atoms(ragged_systems(seed=8), device="cpu")
    model = make(True)
    neighbors = model.neighbor_list.update(batch)
    in_kernel = copy.copy(neighbors)
    in_kernel.reused = False  # a list made afresh each step (CUDA): the kernel makes the images
    assert neighbors.reused and "image_vectors" not in in_kernel.__dict__
    parameters = model.kernel_parameters()
    once = pair_sums(model.kernel_terms, parameters, batch.positions, neighbors, model.cutoff, half=False)
    assert "image_vectors" in neighbors.__dict__  # the kernel did read them
    made = pair_sums(model.kernel_terms, parameters, batch.positions, in_kernel, model.cutoff, half=False)
    assert "image_vectors" not in in_kernel.__dict__
    for ours, theirs in zip(once, made, strict=True):
        assert torch.equal(ours.nan_to_num(), theirs.nan_to_num())
