"""Batch: fields and shapes, slicing and joining, device and dtype moves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nvalchemi_ase.data import AtomCategory, Batch, BatchValidationError, Kind, Scope
from tests.structures import ragged_systems


@pytest.fixture
def systems():
    return ragged_systems()


@pytest.fixture
def batch(systems):
    return Batch.from_atoms(systems, device="cpu")


def test_fields_have_declared_shapes(systems, batch):
    n = sum(len(a) for a in systems)
    b = len(systems)
    assert batch.num_nodes == n and batch.num_graphs == b and len(batch) == b
    assert batch.positions.shape == (n, 3) and batch.velocities.shape == (n, 3)
    assert batch.masses.shape == (n,) and batch.atomic_numbers.shape == (n,)
    assert batch.atom_categories.shape == (n,) and batch.batch_idx.shape == (n,)
    assert batch.cell.shape == (b, 3, 3) and batch.pbc.shape == (b, 3)
    assert batch.status.shape == (b,) and batch.system_id.tolist() == list(range(b))
    assert batch.ptr.tolist() == [0, *np.cumsum([len(a) for a in systems]).tolist()]
    assert batch.dtype == torch.float64 and batch.atomic_numbers.dtype == torch.long
    assert batch.forces is None and batch.energy is None and batch.stress is None


def test_batch_idx_maps_atoms_to_their_system(systems, batch):
    expected = np.repeat(np.arange(len(systems)), [len(a) for a in systems])
    assert batch.batch_idx.tolist() == expected.tolist()
    for b, atoms in enumerate(systems):
        rows = batch.positions[batch.batch_idx == b].numpy()
        np.testing.assert_array_equal(rows, atoms.positions)


@pytest.mark.parametrize("carried", [False, True])
def test_slices_copy_the_metadata(systems, carried):
    if carried:  # info and extra arrays: the deep copy
        systems[1].info["label"] = {"kind": "test"}
        systems[1].set_array("tag2", np.arange(len(systems[1])))
    batch = Batch.from_atoms(systems, device="cpu")
    picked = batch.index_select([1])
    picked.meta[0].info["added"] = 1
    picked.meta[0].celldisp += 1.0
    if carried:
        picked.meta[0].info["label"]["kind"] = "changed"
        picked.meta[0].arrays["tag2"] += 1
        assert batch.meta[1].info["label"] == {"kind": "test"}
        assert batch.meta[1].arrays["tag2"].tolist() == list(range(len(systems[1])))
    assert "added" not in batch.meta[1].info and not batch.meta[1].celldisp.any()


def test_default_device_and_dtype(systems):
    batch = Batch.from_atoms(systems)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert batch.device.type == expected and batch.dtype == torch.float64


def test_index_select_keeps_order_and_metadata(systems, batch):
    picked = batch.index_select([3, 0, 5])
    assert picked.num_graphs == 3
    assert picked.counts.tolist() == [len(systems[3]), len(systems[0]), len(systems[5])]
    back = picked.to_atoms()
    for got, want in zip(back, [systems[3], systems[0], systems[5]], strict=True):
        np.testing.assert_array_equal(got.positions, want.positions)
        np.testing.assert_array_equal(got.cell.array, want.cell.array)
    assert picked.system_id.tolist() == [3, 0, 5]


@pytest.mark.parametrize(
    "index",
    [
        slice(1, 4),
        np.array([False, True, True, True, False, False]),
        torch.tensor([1, 2, 3]),
        [-5, -4, -3],
    ],
)
def test_index_select_accepts_slices_masks_tensors_and_negatives(batch, index):
    assert batch.index_select(index).system_id.tolist() == [1, 2, 3]


def test_index_select_rejects_empty_and_out_of_range(batch):
    with pytest.raises(IndexError, match="empty"):
        batch.index_select([])
    with pytest.raises(IndexError, match="out of range"):
        batch.index_select([6])
    with pytest.raises(IndexError, match="integers or booleans"):
        batch.index_select(np.array([0.5]))


def test_cat_joins_and_keeps_common_optional_fields(batch):
    left, right = batch.index_select([0, 1]), batch.index_select([2, 3, 4, 5])
    left.forces = torch.ones(left.num_nodes, 3, dtype=torch.float64)
    right.forces = torch.full((right.num_nodes, 3), 2.0, dtype=torch.float64)
    left.energy = torch.zeros(2, 1, dtype=torch.float64)  # only one side: dropped
    joined = Batch.cat([left, right])
    assert joined.system_id.tolist() == batch.system_id.tolist()
    torch.testing.assert_close(joined.positions, batch.positions, rtol=0, atol=0)
    torch.testing.assert_close(joined.batch_idx, batch.batch_idx, rtol=0, atol=0)
    assert joined.forces[: left.num_nodes].eq(1.0).all() and joined.forces[left.num_nodes :].eq(2.0).all()
    assert joined.energy is None


def test_cat_rejects_mixed_dtypes(batch):
    with pytest.raises(BatchValidationError, match="float32"):
        Batch.cat([batch, batch.to(dtype=torch.float32)])


def test_to_casts_floats_only_and_copies(batch):
    single = batch.to(dtype=torch.float32)
    assert single.positions.dtype == torch.float32 and single.masses.dtype == torch.float32
    assert single.atomic_numbers.dtype == torch.long and single.pbc.dtype == torch.bool
    single.positions.add_(1.0)
    assert not torch.equal(single.positions.double(), batch.positions)
    with pytest.raises(BatchValidationError, match="float type"):
        batch.to(dtype=torch.int32)


def test_custom_field_is_sliced_by_its_scope(batch):
    batch.add_field("charges", torch.arange(batch.num_nodes, dtype=torch.float64), Scope.ATOM)
    batch.add_field("temperature", torch.arange(batch.num_graphs, dtype=torch.float64), Scope.SYSTEM)
    picked = batch.index_select([2])
    start = int(batch.ptr[2])
    assert picked.charges.tolist() == list(range(start, start + picked.num_nodes))
    assert picked.temperature.tolist() == [2.0]
    with pytest.raises(BatchValidationError, match="taken"):
        batch.add_field("positions", batch.positions, Scope.ATOM)


def test_setting_a_field_checks_its_shape(batch):
    with pytest.raises(BatchValidationError, match=r"field 'forces'.*expected"):
        batch.forces = torch.zeros(batch.num_nodes + 1, 3, dtype=torch.float64)
    with pytest.raises(BatchValidationError, match="field 'energy'"):
        batch.energy = torch.zeros(batch.num_graphs, dtype=torch.float64)
    with pytest.raises(BatchValidationError, match="required"):
        batch.positions = None


def test_frozen_category_value(batch):
    assert AtomCategory.FROZEN == -1 and AtomCategory.NORMAL == 0
    assert (batch.atom_categories == AtomCategory.NORMAL).all()


def test_unknown_attribute_raises(batch):
    with pytest.raises(AttributeError, match="no field"):
        _ = batch.not_a_field


def test_cat_pads_per_system_state_of_different_widths(batch):
    small, large = batch.index_select([0]), batch.index_select([1, 2])
    small.add_field("hessian", torch.ones(1, 3, 3, dtype=torch.float64), Scope.SYSTEM)
    large.add_field("hessian", torch.full((2, 6, 6), 2.0, dtype=torch.float64), Scope.SYSTEM)
    joined = Batch.cat([small, large])
    assert joined.hessian.shape == (3, 6, 6)
    assert torch.equal(joined.hessian[0, :3, :3], torch.ones(3, 3, dtype=torch.float64))
    assert joined.hessian[0, 3:].abs().sum() == 0 and joined.hessian[0, :, 3:].abs().sum() == 0
    assert (joined.hessian[1:] == 2.0).all()
    assert joined.index_select([0]).hessian.shape == (1, 6, 6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int32, torch.complex128])
def test_only_float64_and_float32_batches_are_built(systems, batch, dtype):
    with pytest.raises(BatchValidationError, match=r"float64 or torch\.float32"):
        Batch.from_atoms(systems, device="cpu", dtype=dtype)
    with pytest.raises(BatchValidationError, match=r"float64 or torch\.float32"):
        batch.to(dtype=dtype)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("positions", lambda b: b.positions.float(), r"field 'positions'.*float32, expected torch.float64"),
        ("positions", lambda b: b.positions.half(), r"field 'positions'.*float16"),
        ("forces", lambda b: torch.zeros(b.num_nodes, 3, dtype=torch.bfloat16), "field 'forces'.*bfloat16"),
        ("energy", lambda b: torch.zeros(b.num_graphs, 1, dtype=torch.float32), "field 'energy'.*float32"),
        (
            "atomic_numbers",
            lambda b: b.atomic_numbers.double(),
            r"field 'atomic_numbers'.*expected torch.int64",
        ),
        ("atomic_numbers", lambda b: b.atomic_numbers.int(), r"field 'atomic_numbers'.*int32"),
        ("pbc", lambda b: b.pbc.long(), r"field 'pbc'.*expected torch.bool"),
        ("status", lambda b: b.status.float(), "field 'status'"),
        (
            "velocities",
            lambda b: torch.zeros(b.num_nodes, 3, dtype=torch.float64, device="meta"),
            "device meta",
        ),
        ("cell", lambda b: b.cell.reshape(-1, 9), r"field 'cell'.*shape"),
    ],
)
def test_setters_refuse_wrong_dtype_shape_or_device_and_keep_the_field(batch, name, make, message):
    batch.forces = torch.ones(batch.num_nodes, 3, dtype=torch.float64)
    batch.energy = torch.ones(batch.num_graphs, 1, dtype=torch.float64)
    before = getattr(batch, name).clone()
    with pytest.raises(BatchValidationError, match=message):
        setattr(batch, name, make(batch))
    assert torch.equal(getattr(batch, name), before)


def test_a_float32_batch_takes_float32_fields_only(batch):
    single = batch.to(dtype=torch.float32)
    single.forces = torch.zeros(single.num_nodes, 3, dtype=torch.float32)
    with pytest.raises(BatchValidationError, match=r"field 'forces'.*float64, expected torch.float32"):
        single.forces = torch.zeros(single.num_nodes, 3, dtype=torch.float64)
    with pytest.raises(BatchValidationError, match=r"field 'charges'.*not a float type"):
        single.add_field("charges", torch.zeros(single.num_nodes, dtype=torch.long), Scope.ATOM, Kind.FLOAT)
    assert not hasattr(single, "charges")  # nothing declared either
    assert "charges" not in single.field_names()


def test_a_field_declared_once_is_only_set_again_and_still_checks_a_users_value(batch):
    n = batch.num_nodes
    batch.add_field("energies", torch.zeros(n, dtype=torch.float64), Scope.ATOM)
    spec = batch._specs["energies"]
    batch.add_field("energies", torch.ones(n, dtype=torch.float64), Scope.ATOM)
    assert batch._specs["energies"] is spec  # declared once, not again
    assert torch.equal(batch.energies, torch.ones(n, dtype=torch.float64))
    with pytest.raises(BatchValidationError, match="energies") as raised:
        batch.energies = torch.zeros(n + 1, dtype=torch.float64)
    assert f"shape ({n + 1},)" in str(raised.value)
    assert torch.equal(batch.energies, torch.ones(n, dtype=torch.float64))  # the field kept its value
    batch.add_field("energies", torch.zeros(n, 2, dtype=torch.float64), Scope.ATOM)  # a new declaration
    assert batch.energies.shape == (n, 2) and batch._specs["energies"].shape == (2,)


def test_fields_read_as_attributes_follow_every_way_of_setting_them(batch):
    held = batch.fields_held()
    moved = batch.positions + 1.0
    batch.positions = moved
    assert batch.positions is moved and batch.field_names() == list(held)
    batch.assign("velocities", batch.velocities * 2.0)
    batch.forces = torch.zeros_like(batch.positions)
    assert batch.forces is not None and "forces" in batch.field_names()
    batch.put_back(held)
    assert batch.positions is held["positions"] and batch.velocities is held["velocities"]
    assert batch.forces is None and "forces" not in batch.field_names()
    batch.energy = torch.zeros(batch.num_graphs, 1, dtype=torch.float64)
    batch.energy = None
    assert batch.energy is None and "energy" not in batch.field_names()
    assert batch.neighbors is None  # not a field: what a NeighborListHook sets for one compute
