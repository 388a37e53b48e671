"""AutogradModel's ``cpu_edges_per_pass``: passes of whole systems give the one-pass results."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.models import evaluate
from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.ops import segment_sum
from tests.structures import ragged_systems


class AngleModule(torch.nn.Module):
    """Energies that read every index of the graph: edges, their reverses, angle triplets, batch and ptr.

    Each directed edge carries ``h = exp(−r/2)·Z_sender``; a bond pays ``h·h_reverse`` and an angle at
    atom i pays ``cos θ·h1·h2``. A wrong reverse index or triplet offset changes the energy.
    """

    cutoff = 6.0

    def __init__(self) -> None:
        super().__init__()
        self.passes: list[int] = []  # systems per call
        self.threads: set[str] = set()  # the threads the calls ran on

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        self.passes.append(graph.num_systems)
        self.threads.add(threading.current_thread().name)
        sender = graph.edge_index[0]
        lengths = graph.edge_vectors.norm(dim=1)
        z = graph.atomic_numbers.to(lengths.dtype)
        h = torch.exp(-0.5 * lengths) * z[sender]
        bonds = 1e-3 * h * h[graph.reverse_edge]
        first, second = graph.triplets.unbind(1)
        unit = graph.edge_vectors / lengths.unsqueeze(1)
        cosine = (unit[first] * unit[second]).sum(dim=1)
        angles = 1e-3 * cosine * h[first] * h[second]
        atoms = graph.positions.shape[0]
        energies = segment_sum(bonds, sender, atoms) + segment_sum(angles, sender[first], atoms)
        counts = (graph.ptr[1:] - graph.ptr[:-1]).to(lengths.dtype)
        return {
            "energy": segment_sum(energies, graph.batch, graph.num_systems),
            "energies": energies,
            "charges": z / 100.0,
            "dipole": counts.unsqueeze(1).expand(-1, 3) * 0.5,  # per system
        }


def model(limit: int | None) -> AutogradModel:
    return AutogradModel(
        AngleModule(), skin=0.3, reverse_edges=True, angle_cutoff=3.9, cpu_edges_per_pass=limit,
        properties=("energies", "charges", "dipole"),
    )  # fmt: skip


def mixed_systems() -> list:
    systems = ragged_systems(seed=5)
    rng = np.random.default_rng(5)
    for atoms in systems:  # several elements, so an edge and its reverse carry different h
        atoms.set_atomic_numbers(rng.choice([18, 10, 36], size=len(atoms)))
    return systems


@pytest.mark.parametrize("limit", [1, 200, 900])
def test_passes_of_whole_systems_give_the_one_pass_results(limit):
    batch = Batch.from_atoms(mixed_systems(), device="cpu")
    whole, cut = model(None), model(limit)
    properties = ("energy", "forces", "stress", "energies", "charges", "dipole")
    expected, got = evaluate(whole, batch, properties), evaluate(cut, batch, properties)
    assert whole.module.passes == [batch.num_graphs]
    assert len(cut.module.passes) > 1 and sum(cut.module.passes) == batch.num_graphs
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-12, atol=1e-14, equal_nan=True, msg=key)
    assert torch.isfinite(got["forces"]).all() and got["forces"].abs().max() > 1e-6


@contextlib.contextmanager
def torch_threads(count: int):
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_every_system_is_in_exactly_one_pass_and_the_limit_holds_but_for_one_system():
    batch = Batch.from_atoms(mixed_systems() * 3, device="cpu")
    cut = model(400)
    with torch_threads(1):  # passes in turn, so they are recorded in system order
        evaluate(cut, batch, ("energy", "forces"))
    whole = AutogradModel(AngleModule(), skin=0.3, reverse_edges=True, angle_cutoff=3.9)
    edges, _ = whole.edges(batch, whole.neighbors(batch))
    per_system = torch.bincount(batch.batch_idx[edges[0]], minlength=batch.num_graphs).tolist()
    start = 0
    for systems in cut.module.passes:
        count = sum(per_system[start : start + systems])
        assert count <= 400 + max(per_system[start : start + systems])
        start += systems
    assert start == batch.num_graphs


def test_passes_run_side_by_side_and_give_the_same_bits_whatever_the_thread_count():
    batch = Batch.from_atoms(mixed_systems() * 2, device="cpu")
    properties = ("energy", "forces", "stress", "energies", "charges", "dipole")
    results, threads = {}, {}
    for count in (1, 2, 3):
        cut = model(300)
        with torch_threads(count):
            results[count] = evaluate(cut, batch, properties)
            assert torch.get_num_threads() == count  # the caller's count is put back
        threads[count] = cut.module.threads
        assert len(cut.module.passes) > 3
    assert threads[1] == {threading.current_thread().name}
    for count in (2, 3):  # which of the pool's threads took passes is the scheduler's (see the next test)
        assert 1 <= len(threads[count]) <= count
        assert all(name.startswith("nvalchemi_ase-passes") for name in threads[count])
    for count in (2, 3):
        for key, value in results[1].items():
            torch.testing.assert_close(results[count][key], value, rtol=0, atol=0, equal_nan=True)


class MeetingModule(AngleModule):
    """The first two passes wait for each other: a thread running passes in turn stops at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.meeting = threading.Barrier(2, timeout=60)
        self.lock = threading.Lock()
        self.calls = 0

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        with self.lock:
            self.calls += 1
            first_two = self.calls <= 2
        if first_two:
            self.meeting.wait()  # BrokenBarrierError after 60 s alone
        return super().forward(graph)


def test_with_two_threads_two_passes_run_at_once():
    batch = Batch.from_atoms(mixed_systems(), device="cpu")
    module = MeetingModule()
    cut = AutogradModel(module, skin=0.3, reverse_edges=True, angle_cutoff=3.9, cpu_edges_per_pass=300)
    with torch_threads(2):
        evaluate(cut, batch, ("energy", "forces"))
    assert len(cut.module.passes) > 2 and len(cut.module.threads) == 2


def test_the_limit_is_checked():
    with pytest.raises(ValueError, match="cpu_edges_per_pass must be a positive integer"):
        model(0)
    with pytest.raises(ValueError, match="cpu_edges_per_pass"):
        model(True)


class TailModule(torch.nn.Module):
    """An energy made of subnormal float32 terms, scaled up: ``Σ exp(−40 r) · 1e30`` over edges.

    At r ≈ 2.2 Å, ``exp(−40 r)`` is about 1e-38, below float32's smallest normal (1.18e-38):
    flushed, those terms and their forces are zero; kept, they sum to about 1e-8 eV.
    """

    cutoff = 2.6

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        self.threads.add(threading.current_thread().name)
        # an operation large enough for torch to split over its threads: none of them may keep subnormals
        wide = torch.full((1 << 20,), 1e-40, dtype=graph.edge_vectors.dtype) * 1.0
        self.subnormals_kept = int((wide != 0).sum())
        lengths = graph.edge_vectors.norm(dim=1)
        terms = torch.exp(-40.0 * lengths) * 1e30
        return segment_sum(terms, graph.batch[graph.edge_index[0]], graph.num_systems)


def dimers() -> list:
    from ase import Atoms

    return [Atoms("Ar2", positions=[[0, 0, 0], [0, 0, d]]) for d in (2.20, 2.22, 2.25)]


def subnormal_in_this_thread() -> bool:
    """Whether this thread keeps float32 subnormals (a product with one is not flushed to zero)."""
    return bool(torch.tensor(1e-40, dtype=torch.float32) * 1.0 != 0)


@pytest.mark.parametrize("count", [1, 2])
def test_a_float32_module_runs_with_subnormals_flushed_on_threads_of_ours(count):
    batch = Batch.from_atoms(dimers(), device="cpu")
    expected = {  # float64 (not flushed by default): the exact terms
        key: value.to(torch.float32)
        for key, value in evaluate(AutogradModel(TailModule()), batch, ("energy", "forces")).items()
    }
    assert (expected["energy"] > 1e-9).all() and (expected["forces"].abs().amax(1) > 0).all()
    kept = AutogradModel(TailModule(), dtype=torch.float32, flush_denormals=False)
    flushed = AutogradModel(TailModule(), dtype=torch.float32)
    with torch_threads(count):
        kept_results = evaluate(kept, batch, ("energy", "forces"))
        flushed_results = evaluate(flushed, batch, ("energy", "forces"))
        assert torch.get_num_threads() == count
    for key in ("energy", "forces"):  # kept: float32's round-off of the float64 terms
        torch.testing.assert_close(kept_results[key].to(torch.float32), expected[key], rtol=1e-5, atol=0)
        assert (flushed_results[key] == 0).all()
    assert kept.module.subnormals_kept == 1 << 20 and flushed.module.subnormals_kept == 0
    assert kept.module.threads == {threading.current_thread().name}  # one pass, no reason to move
    assert len(flushed.module.threads) == 1
    assert next(iter(flushed.module.threads)).startswith("nvalchemi_ase-passes")
    assert subnormal_in_this_thread()  # the caller's thread is untouched


def test_flushing_is_the_callers_choice_and_is_checked():
    batch = Batch.from_atoms(dimers(), device="cpu")
    float64_flushed = AutogradModel(TailModule(), flush_denormals=True)
    energy = evaluate(float64_flushed, batch, ("energy",))["energy"]
    assert (energy > 1e-9).all()  # float64 has no subnormals here: flushing changes nothing
    assert next(iter(float64_flushed.module.threads)).startswith("nvalchemi_ase-passes")
    with pytest.raises(TypeError, match="flush_denormals must be a bool or None, got 'yes'"):
        AutogradModel(TailModule(), flush_denormals="yes")
