"""Sinks: what is written is what is read back, in order, and nothing is lost or half-stored."""

from __future__ import annotations

from functools import partial

import ase.io
import numpy as np
import pytest
import torch

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.models import LennardJones, evaluate
from nvalchemi_ase.sinks import (
    DataSink,
    GPUBuffer,
    HostMemory,
    SinkEmptyError,
    SinkFullError,
    TrajectorySink,
)
from nvalchemi_ase.sinks.files import remove_parts, replacing
from tests.cuda import no_syncs
from tests.structures import ragged_systems
from tests.tolerances import EXTXYZ_ATOL

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}
"""extxyz writes columns with 8 decimals, so a round trip is exact to half of 1e-8."""

MEMORY_SINKS = {"host": HostMemory, "buffer": partial(GPUBuffer, max_atoms=32)}
"""The buffer gets room for the largest test system whatever the first write holds."""


def _with_results(batch: Batch, seed: int = 0) -> Batch:
    """Energy and forces from LJ, and non-zero velocities, so every field has values to compare."""
    outputs = evaluate(LennardJones(**ARGON), batch)
    batch.energy = outputs["energy"]
    batch.forces = outputs["forces"]
    generator = torch.Generator().manual_seed(seed)
    batch.velocities = 0.01 * torch.randn(batch.positions.shape, generator=generator, dtype=batch.dtype)
    return batch


@pytest.fixture
def batch() -> Batch:
    """Six ragged systems (32, 12, 13, 27, 1, 2 atoms) with energy, forces and velocities."""
    return _with_results(Batch.from_atoms(ragged_systems(), device="cpu"))


@pytest.fixture
def plain_batch() -> Batch:
    """The same systems without ``info`` (extxyz cannot hold the slab's array-valued info)."""
    systems = ragged_systems()
    for atoms in systems:
        atoms.info.clear()
    return _with_results(Batch.from_atoms(systems, device="cpu"))


def _mask(*selected: int, size: int = 6) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[list(selected)] = True
    return mask


def assert_same_systems(read: Batch, expected: Batch) -> None:
    """Every field of ``expected`` equal in ``read`` (bit for bit), with counts and metadata."""
    np.testing.assert_array_equal(read.counts, expected.counts)
    assert sorted(read.field_names()) == sorted(expected.field_names())
    for name in expected.field_names():
        ours, theirs = getattr(read, name), getattr(expected, name)
        assert ours.dtype == theirs.dtype, name
        assert torch.equal(ours.cpu(), theirs.cpu()), name
    assert [m.info.keys() for m in read.meta] == [m.info.keys() for m in expected.meta]


# ---------------------------------------------------------------------- memory sinks
@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_round_trip_equals_the_written_batch(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=10)
    sink.write(batch)
    assert len(sink) == 6
    read = sink.read()
    assert read.device == torch.device("cpu")
    assert_same_systems(read, batch)
    np.testing.assert_array_equal(read.to_atoms()[3].positions, batch.to_atoms()[3].positions)
    assert read.to_atoms()[3].get_potential_energy() == batch.energy[3, 0].item()


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_writes_come_back_in_order_and_masks_pick_the_systems(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=10)
    sink.write(batch, mask=_mask(1, 4))
    sink.write(batch, mask=_mask(0, 3, 5))
    sink.write(batch, mask=np.array([False, False, True, False, False, False]))
    read = sink.read()
    assert read.system_id.tolist() == [1, 4, 0, 3, 5, 2]
    assert_same_systems(read, batch.index_select([1, 4, 0, 3, 5, 2]))


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_a_snapshot_does_not_follow_later_changes_of_the_batch(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=10)
    expected = batch.clone()
    sink.write(batch)
    batch.positions.add_(1.0)
    batch.energy.zero_()
    assert_same_systems(sink.read(), expected)


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_bad_masks(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=10)
    with pytest.raises(ValueError, match=r"mask length 4 != num_graphs 6"):
        sink.write(batch, mask=torch.ones(4, dtype=torch.bool))
    with pytest.raises(TypeError, match="bool"):
        sink.write(batch, mask=torch.ones(6, dtype=torch.long))
    sink.write(batch, mask=torch.zeros(6, dtype=torch.bool))  # all False: nothing to do
    assert len(sink) == 0
    with pytest.raises(SinkEmptyError, match="empty"):
        sink.read()


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_a_write_past_capacity_raises_before_storing_anything(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=8)
    sink.write(batch)
    assert not sink.is_full
    with pytest.raises(SinkFullError, match=r"capacity 8, 6 stored, cannot add 6"):
        sink.write(batch)
    assert len(sink) == 6
    assert_same_systems(sink.read(), batch)
    sink.write(batch, mask=_mask(2, 5))
    assert sink.is_full and len(sink) == 8
    with pytest.raises(SinkFullError, match=r"capacity 8, 8 stored, cannot add 1"):
        sink.write(batch, mask=_mask(0))
    assert sink.read().system_id.tolist() == [0, 1, 2, 3, 4, 5, 2, 5]


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_drain_returns_everything_and_empties(kind, batch):
    sink = MEMORY_SINKS[kind](capacity=6)
    sink.write(batch)
    assert_same_systems(sink.drain(), batch)
    assert len(sink) == 0 and not sink.is_full
    with pytest.raises(SinkEmptyError):
        sink.drain()
    sink.write(batch, mask=_mask(3))
    assert_same_systems(sink.read(), batch.index_select([3]))


@pytest.mark.parametrize("kind", MEMORY_SINKS)
def test_custom_fields_and_float32_are_kept(kind, batch):
    batch.add_field("charges", torch.linspace(-1.0, 1.0, batch.num_nodes, dtype=torch.float64), Scope.ATOM)
    batch.add_field("label", torch.arange(6, dtype=torch.long) * 7, Scope.SYSTEM)
    single = batch.to(dtype=torch.float32)
    sink = MEMORY_SINKS[kind](capacity=10)
    sink.write(single, mask=_mask(0, 2, 4))
    read = sink.read()
    assert read.scope_of("charges") is Scope.ATOM and read.scope_of("label") is Scope.SYSTEM
    assert read.positions.dtype == torch.float32
    assert_same_systems(read, single.index_select([0, 2, 4]))


@pytest.mark.parametrize("kind", MEMORY_SINKS)
@pytest.mark.parametrize(("capacity", "error"), [(0, ValueError), (-3, ValueError), (2.5, TypeError)])
def test_bad_capacity(kind, capacity, error):
    with pytest.raises(error, match="capacity"):
        MEMORY_SINKS[kind](capacity=capacity)


def test_sinks_share_the_base_class():
    assert all(issubclass(cls, DataSink) for cls in (HostMemory, GPUBuffer, TrajectorySink))
    assert issubclass(SinkFullError, RuntimeError) and issubclass(SinkEmptyError, RuntimeError)


# ---------------------------------------------------------------------- GPUBuffer
def test_gpu_buffer_allocates_once_and_zero_keeps_the_allocation(batch):
    sink = GPUBuffer(capacity=4)
    assert sink.buffers == {}
    sink.write(batch, mask=_mask(0, 5))
    assert sink.max_atoms == 32 and sink.device == torch.device("cpu")
    buffers = sink.buffers
    assert buffers["positions"].shape == (4 * 32, 3) and buffers["energy"].shape == (4, 1)
    pointers = {name: tensor.data_ptr() for name, tensor in buffers.items()}
    sink.zero()
    assert len(sink) == 0
    sink.write(batch, mask=_mask(1, 2, 3))
    assert {name: tensor.data_ptr() for name, tensor in sink.buffers.items()} == pointers
    assert_same_systems(sink.read(), batch.index_select([1, 2, 3]))


def test_gpu_buffer_keeps_every_dtype(batch):
    batch.add_field("weights", torch.full((batch.num_nodes,), 0.5, dtype=torch.float32), Scope.ATOM)
    batch.add_field("flags", torch.tensor([True, False, True, True, False, True]), Scope.SYSTEM)
    sink = GPUBuffer(capacity=6)
    sink.write(batch)
    for name in batch.field_names():
        assert sink.buffers[name].dtype == getattr(batch, name).dtype, name
    dtypes = {name: sink.buffers[name].dtype for name in ("positions", "atomic_numbers", "pbc", "weights")}
    assert dtypes == {
        "positions": torch.float64,
        "atomic_numbers": torch.long,
        "pbc": torch.bool,
        "weights": torch.float32,
    }
    assert_same_systems(sink.read(), batch)


def test_gpu_buffer_rejects_a_system_larger_than_max_atoms(batch):
    sink = GPUBuffer(capacity=6)
    sink.write(batch, mask=_mask(1, 2))  # 12 and 13 atoms: max_atoms becomes 13
    assert sink.max_atoms == 13
    with pytest.raises(SinkFullError, match=r"max_atoms=13.*system 3 of the batch has 27"):
        sink.write(batch, mask=_mask(3, 4))
    assert len(sink) == 2
    explicit = GPUBuffer(capacity=6, max_atoms=2)
    with pytest.raises(SinkFullError, match="max_atoms=2"):
        explicit.write(batch)
    assert len(explicit) == 0 and explicit.buffers == {}


def test_gpu_buffer_fields_are_fixed_at_the_first_write(batch):
    sink = GPUBuffer(capacity=6)
    sink.write(batch, mask=_mask(0))
    bare = Batch.from_atoms(ragged_systems(), device="cpu")
    with pytest.raises(ValueError, match=r"missing \['energy', 'forces'\]"):
        sink.write(bare, mask=_mask(1))
    with pytest.raises(ValueError, match=r"positions: torch.float64\[3\] in the buffer, torch.float32\[3\]"):
        sink.write(batch.to(dtype=torch.float32), mask=_mask(1))
    assert len(sink) == 1


def test_gpu_buffer_constructor_checks():
    with pytest.raises(ValueError, match="max_atoms"):
        GPUBuffer(capacity=2, max_atoms=0)
    with pytest.raises(ValueError, match="device"):
        GPUBuffer(capacity=2, device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            GPUBuffer(capacity=2, device="cuda")


@pytest.mark.gpu
def test_gpu_buffer_on_cuda_without_host_syncs(batch):
    cuda = batch.to("cuda")
    sink = GPUBuffer(capacity=12)
    sink.write(cuda, mask=_mask(0, 4).cuda())  # allocates; a device mask costs one sync
    assert all(tensor.is_cuda for tensor in sink.buffers.values())
    with no_syncs():
        sink.write(cuda)  # the whole batch: index copies only
    read = sink.read()
    assert read.device.type == "cuda"
    assert_same_systems(read, batch.index_select([0, 4, 0, 1, 2, 3, 4, 5]))
    host = HostMemory(capacity=6)
    host.write(cuda)
    assert host.read().device == torch.device("cpu")
    assert_same_systems(host.read(), batch)


# ---------------------------------------------------------------------- TrajectorySink
def _advance(batch: Batch, k: int) -> Batch:
    """A copy moved and sped up by step ``k``, with its LJ results: distinct frames."""
    moved = batch.clone()
    moved.positions = moved.positions + 0.01 * k
    moved.velocities = moved.velocities * (1.0 + k)
    return _with_results(moved, seed=k) if k else moved


def _assert_frame_equals(frame, expected, exact: bool = True) -> None:
    """``frame`` (read from a file) against ``expected`` (the Atoms the sink wrote)."""
    assert_equal = np.testing.assert_array_equal
    if not exact:

        def assert_equal(a, b):
            np.testing.assert_allclose(a, b, rtol=0, atol=EXTXYZ_ATOL)

    assert_equal(frame.positions, expected.positions)
    assert_equal(frame.get_momenta(), expected.get_momenta())
    assert_equal(frame.get_forces(), expected.get_forces())
    assert frame.get_potential_energy() == expected.get_potential_energy()
    np.testing.assert_array_equal(frame.numbers, expected.numbers)
    np.testing.assert_array_equal(frame.cell.array, expected.cell.array)
    np.testing.assert_array_equal(frame.pbc, expected.pbc)


@pytest.mark.parametrize("file_format", ["traj", "extxyz"])
def test_files_are_readable_mid_run_and_after_close(file_format, batch, plain_batch, tmp_path):
    source = batch if file_format == "traj" else plain_batch
    steps = [_advance(source, k) for k in range(3)]
    sink = TrajectorySink(tmp_path / "out", format=file_format)
    for k, snapshot in enumerate(steps):
        sink.write(snapshot, step=10 * k)
    expected = [snapshot.to_atoms() for snapshot in steps]
    assert len(sink) == 18
    names = [f"system_{i:05d}.{file_format}" for i in range(6)]
    assert [path.name for path in sink.paths()] == names
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == names

    for i, path in enumerate(sink.paths()):  # while the sink is still open
        frames = ase.io.read(path, ":")
        assert len(frames) == 3
        for k, frame in enumerate(frames):
            _assert_frame_equals(frame, expected[k][i], exact=file_format == "traj")
            assert frame.info["step"] == 10 * k
    sink.close()
    sink.close()  # twice is fine
    for i, path in enumerate(sink.paths()):
        frames = ase.io.read(path, ":")
        _assert_frame_equals(frames[-1], expected[2][i], exact=file_format == "traj")


def test_read_returns_the_frames_in_write_order(batch, tmp_path):
    with TrajectorySink(tmp_path, prefix="argon") as sink:
        sink.write(batch, mask=_mask(4, 1))
        sink.write(_advance(batch, 1), mask=_mask(1, 5))
        read = sink.read()
    assert [path.name for path in sink.paths()] == [
        "argon_00001.traj",
        "argon_00004.traj",
        "argon_00005.traj",
    ]
    assert read.system_id.tolist() == [1, 4, 1, 5]
    assert read.device == torch.device("cpu")
    written = Batch.cat([batch.index_select([1, 4]), _advance(batch, 1).index_select([1, 5])])
    for name in ("positions", "atomic_numbers", "cell", "pbc", "energy", "forces"):
        assert torch.equal(getattr(read, name), getattr(written, name)), name
    torch.testing.assert_close(read.velocities, written.velocities, rtol=1e-15, atol=0.0)


def test_system_ids_name_the_files(batch, tmp_path):
    batch.system_id = torch.tensor([7, 123, 0, 42, 99999, 5])
    with TrajectorySink(tmp_path) as sink:
        sink.write(batch, mask=_mask(1, 4))
    assert [path.name for path in sink.paths()] == ["system_00123.traj", "system_99999.traj"]
    frame = ase.io.read(tmp_path / "system_00123.traj")
    np.testing.assert_array_equal(frame.positions, batch.to_atoms()[1].positions)


def test_trajectory_capacity_counts_frames(batch, tmp_path):
    sink = TrajectorySink(tmp_path, capacity=8)
    sink.write(batch)
    with pytest.raises(SinkFullError, match=r"capacity 8, 6 stored, cannot add 6"):
        sink.write(batch)
    assert len(sink) == 6
    assert all(len(ase.io.read(path, ":")) == 1 for path in sink.paths())
    sink.write(batch, mask=_mask(0, 1))
    assert sink.is_full
    sink.close()


def test_a_second_run_appends_after_close_but_a_new_sink_starts_afresh(batch, tmp_path):
    sink = TrajectorySink(tmp_path)
    sink.write(batch, mask=_mask(0))
    sink.close()
    sink.write(_advance(batch, 1), mask=_mask(0))  # reopens and appends
    sink.close()
    assert len(ase.io.read(tmp_path / "system_00000.traj", ":")) == 2

    fresh = TrajectorySink(tmp_path)
    fresh.write(batch, mask=_mask(0))
    fresh.close()
    assert len(ase.io.read(tmp_path / "system_00000.traj", ":")) == 1

    appending = TrajectorySink(tmp_path, append=True)
    appending.write(_advance(batch, 2), mask=_mask(0))
    assert len(ase.io.read(tmp_path / "system_00000.traj", ":")) == 2
    assert len(appending) == 1
    assert torch.equal(appending.read().positions, _advance(batch, 2).index_select([0]).positions)
    appending.close()


def test_drain_and_zero_remove_the_files(plain_batch, tmp_path):
    sink = TrajectorySink(tmp_path, format="extxyz")
    sink.write(plain_batch, mask=_mask(2, 3))
    drained = sink.drain()
    assert drained.system_id.tolist() == [2, 3]
    assert len(sink) == 0 and list(tmp_path.iterdir()) == []
    with pytest.raises(SinkEmptyError):
        sink.read()


def test_trajectory_sink_constructor_checks(tmp_path):
    nested = tmp_path / "a" / "b"
    TrajectorySink(nested).close()
    assert nested.is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(OSError, match="not writable"):
        TrajectorySink(blocker / "sub")
    with pytest.raises(ValueError, match="format"):
        TrajectorySink(tmp_path, format="pdb")
    with pytest.raises(ValueError, match="prefix"):
        TrajectorySink(tmp_path, prefix="")
    with pytest.raises(ValueError, match="capacity"):
        TrajectorySink(tmp_path, capacity=0)


# ---------------------------------------------------------------------------------------------- whole files
def test_replacing_writes_the_whole_file_or_leaves_the_old_one(tmp_path):
    path = tmp_path / "progress.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), replacing(path) as temporary:
        temporary.write_text("half")
        assert temporary.parent == tmp_path and temporary.name.startswith(".progress.json.")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]
    with replacing(path) as temporary:
        temporary.write_text("new")
        assert path.read_text() == "old"  # until the block ends
    assert path.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["progress.json"]


def test_remove_parts_deletes_only_part_written_files(tmp_path):
    for name in (".system_00001.traj.4242.tmp", ".run.json.7.tmp", ".hidden", "system_00001.traj", "a.tmp"):
        (tmp_path / name).write_text("x")
    remove_parts(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "a.tmp", "system_00001.traj"]
