"""A model's forces bound kept with a batch: trusted only while the batch holds those forces and energy."""

from __future__ import annotations

import pytest
import torch

from nvalchemi_ase.data import Batch, BatchValidationError, forces_bound, keep_forces_bound
from tests.structures import ragged_systems


@pytest.fixture
def systems():
    return ragged_systems()


def test_a_kept_forces_bound_holds_while_forces_and_energy_are_those_it_was_kept_with(systems):
    batch = Batch.from_atoms(systems, device="cpu")
    batch.forces = torch.zeros(batch.num_nodes, 3, dtype=torch.float64)
    batch.energy = torch.zeros(batch.num_graphs, 1, dtype=torch.float64)
    bound = torch.zeros(batch.num_graphs, dtype=torch.float64)
    keep_forces_bound(batch, bound)
    assert forces_bound(batch) is bound
    batch.forces.add_(1.0)  # written in place: the bound no longer vouches for them
    assert forces_bound(batch) is None
    keep_forces_bound(batch, bound)
    batch.energy = batch.energy + 1.0  # replaced
    assert forces_bound(batch) is None
    keep_forces_bound(batch, bound)
    batch.forces = batch.forces.clone()
    assert forces_bound(batch) is None
    keep_forces_bound(batch, bound)
    keep_forces_bound(batch, None)
    assert forces_bound(batch) is None


@pytest.mark.parametrize(
    "bad",
    [
        lambda n: torch.zeros(n, dtype=torch.float32),
        lambda n: torch.zeros(n + 1, dtype=torch.float64),
        lambda n: torch.zeros(n, 2, dtype=torch.float64)[:, 0],
    ],
    ids=["float32", "shape", "strided"],
)
def test_a_forces_bound_the_batch_cannot_read_is_refused(systems, bad):
    batch = Batch.from_atoms(systems, device="cpu")
    batch.forces = torch.zeros(batch.num_nodes, 3, dtype=torch.float64)
    batch.energy = torch.zeros(batch.num_graphs, 1, dtype=torch.float64)
    kept = torch.zeros(batch.num_graphs, dtype=torch.float64)
    keep_forces_bound(batch, kept)
    with pytest.raises(BatchValidationError, match="forces_bound"):
        keep_forces_bound(batch, bad(batch.num_graphs))
    assert forces_bound(batch) is kept  # refused before anything changed
