"""AutogradModel: a module's energy, differentiated, equals the analytic models and finite differences."""

from __future__ import annotations

import runpy
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.lj import LennardJones as AseLennardJones

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.models import LennardJones, ModelOutputError, Morse, evaluate
from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.models.morse import quintic_cutoff
from nvalchemi_ase.neighbors import neighbor_list
from nvalchemi_ase.ops import segment_sum
from tests.models.compare import finite_difference_forces, finite_difference_stress, model_forces
from tests.structures import argon_bulk, ragged_systems
from tests.tolerances import FINITE_DIFFERENCE_ATOL, FLOAT64_RTOL

ARGON_LJ = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}
ARGON_MORSE = {"epsilon": 0.0104, "rho0": 6.0, "r0": 3.8, "rcut1": 1.9, "rcut2": 2.2}
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class PairModule(torch.nn.Module):
    """E = ½ Σ_edges u(r), as a user would write a pair potential over the edge list."""

    def __init__(self, pair: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.pair = pair

    def forward(self, graph: AtomGraph) -> torch.Tensor:
        u = self.pair(graph.edge_vectors.norm(dim=1))
        return 0.5 * segment_sum(u, graph.batch[graph.edge_index[0]], graph.num_systems)


def lennard_jones(sigma: float, epsilon: float, rc: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """ASE's shifted LJ (``smooth=False``)."""
    shift = 4.0 * epsilon * ((sigma / rc) ** 12 - (sigma / rc) ** 6)
    return lambda r: 4.0 * epsilon * ((sigma / r) ** 12 - (sigma / r) ** 6) - shift


def morse(epsilon: float, rho0: float, r0: float, rcut1: float, rcut2: float) -> Callable:
    def u(r: torch.Tensor) -> torch.Tensor:
        expf = torch.exp(rho0 * (1.0 - r / r0))
        return epsilon * expf * (expf - 2.0) * quintic_cutoff(r, rcut1 * r0, rcut2 * r0)[0]

    return u


def lj_model(**kwargs) -> AutogradModel:
    return AutogradModel(PairModule(lennard_jones(**ARGON_LJ)), ARGON_LJ["rc"], **kwargs)


def morse_model(**kwargs) -> AutogradModel:
    cutoff = ARGON_MORSE["rcut2"] * ARGON_MORSE["r0"]
    return AutogradModel(PairModule(morse(**ARGON_MORSE)), cutoff, **kwargs)


def _assert_same(ours: dict, reference: dict, keys=("energy", "forces", "stress")) -> None:
    for key in keys:
        scale = float(reference[key].nan_to_num().abs().max())
        torch.testing.assert_close(
            ours[key], reference[key], rtol=FLOAT64_RTOL, atol=FLOAT64_RTOL * scale, equal_nan=True
        )


@pytest.mark.parametrize(
    ("ours", "analytic"),
    [(lj_model, lambda: LennardJones(**ARGON_LJ)), (morse_model, lambda: Morse(**ARGON_MORSE))],
    ids=["lennard-jones", "morse"],
)
def test_pair_modules_equal_the_analytic_models(ours, analytic):
    batch = Batch.from_atoms(ragged_systems(seed=3), device="cpu")
    properties = ("energy", "forces", "stress")
    _assert_same(evaluate(ours(), batch, properties), evaluate(analytic(), batch, properties))


def test_forces_and_stress_are_derivatives_of_the_energy():
    atoms = ragged_systems(seed=4)[1][:5]  # triclinic, periodic, five atoms
    model = morse_model()
    np.testing.assert_allclose(
        model_forces(model, atoms), finite_difference_forces(model, atoms), atol=FINITE_DIFFERENCE_ATOL
    )
    stress = evaluate(model, Batch.from_atoms(atoms, device="cpu"), ("energy", "forces", "stress"))["stress"]
    np.testing.assert_allclose(
        stress[0].numpy(), finite_difference_stress(model, atoms), atol=FINITE_DIFFERENCE_ATOL
    )


def test_a_system_alone_equals_itself_in_a_ragged_batch_in_any_order():
    systems = ragged_systems(seed=5)
    order = [3, 0, 5, 2, 4, 1]
    properties = ("energy", "forces", "stress")
    shuffled = evaluate(
        morse_model(), Batch.from_atoms([systems[k] for k in order], device="cpu"), properties
    )
    starts = np.cumsum([0] + [len(systems[k]) for k in order])
    for position, k in enumerate(order):
        alone = evaluate(morse_model(), Batch.from_atoms(systems[k], device="cpu"), properties)
        inside = {
            "energy": shuffled["energy"][position : position + 1],
            "forces": shuffled["forces"][starts[position] : starts[position + 1]],
            "stress": shuffled["stress"][position : position + 1],
        }
        _assert_same(inside, alone)


@pytest.mark.parametrize("grad_enabled", [True, False])
def test_leaves_no_graph_and_marks_nothing(grad_enabled):
    weight = torch.nn.Parameter(torch.tensor(1.0, dtype=torch.float64))
    module = PairModule(lambda r: weight * morse(**ARGON_MORSE)(r))
    cutoff = ARGON_MORSE["rcut2"] * ARGON_MORSE["r0"]
    model = AutogradModel(module, cutoff)
    batch = Batch.from_atoms(ragged_systems(seed=6), device="cpu")
    positions, cell = batch.positions.clone(), batch.cell.clone()
    with torch.set_grad_enabled(grad_enabled):
        outputs = evaluate(model, batch, ("energy", "forces", "stress"))
    for value in outputs.values():
        assert not value.requires_grad and value.grad_fn is None
    assert not batch.positions.requires_grad and not batch.cell.requires_grad
    assert torch.equal(batch.positions, positions) and torch.equal(batch.cell, cell)
    assert weight.grad is None


def test_engine_nve_follows_the_analytic_model():
    atoms = argon_bulk(2, seed=7)
    atoms.set_velocities(np.random.default_rng(0).normal(scale=0.005, size=(len(atoms), 3)))
    ours, reference = Batch.from_atoms(atoms, device="cpu"), Batch.from_atoms(atoms, device="cpu")
    NVE(morse_model(), dt=5.0).run(ours, n_steps=10)
    NVE(Morse(**ARGON_MORSE), dt=5.0).run(reference, n_steps=10)
    np.testing.assert_allclose(ours.positions.numpy(), reference.positions.numpy(), rtol=0, atol=1e-11)


def test_calculator_gives_ases_numbers_and_omits_stress_without_a_cell():
    bulk_atoms, cluster = argon_bulk(2, seed=8), ragged_systems()[2]
    for atoms in (bulk_atoms, cluster):
        ours, theirs = atoms.copy(), atoms.copy()
        ours.calc, theirs.calc = BatchedCalculator(lj_model(), device="cpu"), AseLennardJones(**ARGON_LJ)
        assert ours.get_potential_energy() == pytest.approx(theirs.get_potential_energy(), rel=FLOAT64_RTOL)
        np.testing.assert_allclose(ours.get_forces(), theirs.get_forces(), rtol=FLOAT64_RTOL, atol=1e-14)
    with pytest.raises(PropertyNotImplementedError):
        ours.get_stress()  # the cluster, as ASE's
    bulk_atoms.calc = BatchedCalculator(lj_model(), device="cpu")
    reference = AseLennardJones(**ARGON_LJ).get_stress(bulk_atoms)
    np.testing.assert_allclose(bulk_atoms.get_stress(), reference, rtol=1e-9, atol=1e-15)


class GraphRecorder(torch.nn.Module):
    def forward(self, graph: AtomGraph) -> torch.Tensor:
        self.graph = graph
        return (graph.edge_vectors.norm(dim=1).sum() * 0.0).expand(graph.num_systems)


def test_graph_holds_every_pair_inside_the_cutoff_in_maces_layout():
    recorder = GraphRecorder()
    batch = Batch.from_atoms(ragged_systems(seed=9), device="cpu")
    outputs = evaluate(AutogradModel(recorder, 6.0), batch, ("energy", "forces", "stress"))
    graph = recorder.graph
    i, j, shifts = neighbor_list(batch, 6.0)
    expected = {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), shifts.tolist(), strict=True)}
    sender, receiver = graph.edge_index
    found = set(zip(sender.tolist(), receiver.tolist(), *graph.unit_shifts.T.tolist(), strict=True))
    assert found == expected and len(sender) == len(expected)
    cell = batch.cell[batch.batch_idx[sender]]
    torch.testing.assert_close(graph.shifts, torch.einsum("ed,edc->ec", graph.unit_shifts.double(), cell))
    vectors = batch.positions[receiver] - batch.positions[sender] + graph.shifts
    torch.testing.assert_close(graph.edge_vectors.detach(), vectors)
    assert set(graph.as_dict()) >= {
        "positions",
        "edge_index",
        "shifts",
        "unit_shifts",
        "cell",
        "batch",
        "ptr",
    }
    assert torch.equal(outputs["forces"], torch.zeros_like(batch.positions))  # constant energy
    assert not outputs["stress"][0].isnan().any() and outputs["stress"][2].isnan().all()  # cluster: no cell


def test_stress_can_be_left_out():
    model = lj_model(compute_stress=False)
    assert "stress" not in model.implemented_properties
    outputs = evaluate(model, Batch.from_atoms(argon_bulk(1), device="cpu"), ("energy", "forces", "stress"))
    assert "stress" not in outputs
    assert set(lj_model().implemented_properties) == {"energy", "free_energy", "forces", "stress"}


class WrongShape(torch.nn.Module):
    def forward(self, graph: AtomGraph) -> torch.Tensor:
        return graph.positions.sum(dim=1)  # per atom, not per system


def test_bad_input_is_refused():
    with pytest.raises(TypeError, match="module"):
        AutogradModel(lambda graph: graph, 3.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cutoff"):
        AutogradModel(WrongShape(), 0.0)
    with pytest.raises(ValueError, match="skin"):
        AutogradModel(WrongShape(), 3.0, skin=-1.0)
    with pytest.raises(ModelOutputError, match=r"WrongShape returned energy \(8,\), expected \[2\]"):
        evaluate(AutogradModel(WrongShape(), 3.0), Batch.from_atoms([Atoms("H4")] * 2, device="cpu"))


def test_todict_is_json():
    assert lj_model(skin=0.2).todict() == {
        "module": "PairModule",
        "cutoff": 8.5,
        "skin": 0.2,
        "max_neighbors": None,
        "compute_stress": True,
        "dtype": None,
        "angle_cutoff": None,
        "angle_first_at_cutoff": False,
        "cpu_edges_per_pass": None,
        "flush_denormals": None,
    }


def test_custom_potential_example_runs(capsys):
    sys.path.insert(0, str(EXAMPLES))
    try:
        main = runpy.run_path(str(EXAMPLES / "custom_potential.py"))["main"]
    finally:
        sys.path.remove(str(EXAMPLES))
    worst = main(["--systems", "4", "--steps", "10", "--device", "cpu"])
    assert worst < FINITE_DIFFERENCE_ATOL
    out = capsys.readouterr().out
    assert "4 systems" in out and "FIRE" in out and "NVE, 10 steps" in out


@pytest.mark.gpu
def test_cuda_equals_cpu():
    batch = Batch.from_atoms(ragged_systems(seed=10), device="cpu")
    properties = ("energy", "forces", "stress")
    cpu = evaluate(morse_model(), batch, properties)
    cuda = evaluate(morse_model().cuda(), batch.to("cuda"), properties)
    _assert_same({k: v.cpu() for k, v in cuda.items()}, cpu)


class PairWithCharges(PairModule):
    """The Morse pair energy, and a made-up per-atom ``charges`` (Σ over neighbours of exp(−r))."""

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        r = graph.edge_vectors.norm(dim=1)
        charges = segment_sum(torch.exp(-r), graph.edge_index[0], graph.positions.shape[0])
        return {"energy": super().forward(graph), "charges": charges}


def test_a_modules_other_results_reach_the_lookalike_atoms_frames_and_engine_batches(tmp_path):
    """``charges`` (an ASE result name) in ``atoms.calc.results`` after each reported look-alike step,
    in its trajectory frames, and in the Atoms of an engine's batch: those of the final positions."""
    from ase.io import read

    from nvalchemi_ase.md.verlet import VelocityVerlet

    cutoff = ARGON_MORSE["rcut2"] * ARGON_MORSE["r0"]
    model = AutogradModel(PairWithCharges(morse(**ARGON_MORSE)), cutoff, properties=("charges",))
    calc = BatchedCalculator(model, device="cpu")
    systems = [argon_bulk(1, seed=1), argon_bulk(2, seed=2)]
    for atoms in systems:
        atoms.calc = calc
    VelocityVerlet(systems, 5.0 * units.fs, trajectory=str(tmp_path / "md.traj")).run(3)
    batch = Batch.from_atoms(systems, device="cpu")
    NVE(model, dt=5.0).run(batch, n_steps=1)
    for k, (atoms, moved) in enumerate(zip(systems, batch.to_atoms(), strict=True)):
        expected = BatchedCalculator(model, device="cpu").calculate_batch([atoms])[0]["charges"]
        np.testing.assert_allclose(atoms.calc.results["charges"], expected, rtol=FLOAT64_RTOL)
        np.testing.assert_allclose(
            read(tmp_path / f"md_{k}.traj", -1).get_charges(), expected, rtol=FLOAT64_RTOL
        )
        expected = BatchedCalculator(model, device="cpu").calculate_batch([moved])[0]["charges"]
        np.testing.assert_allclose(moved.get_charges(), expected, rtol=FLOAT64_RTOL)
