"""The model protocol: a batch in, energy, forces and (optionally) stress out.

A model maps a :class:`~nvalchemi_ase.data.Batch` to a dict with
``energy[B, 1]`` (eV), ``forces[N, 3]`` (eV/Å) and, when asked for and
supported, ``stress[B, 3, 3]`` (eV/Å³, ASE's sign: positive is tensile; NaN
for systems whose cell does not span 3D) and ``energies[N]`` (per atom). It
declares ``cutoff`` (Å; 0 when it needs no neighbour list) and
``implemented_properties``. The engine only reads what a model returns.

Nothing is silently wrong: a system whose positions or cell hold NaN or ±Inf
gets NaN energy and stress, and NaN forces and per-atom energies (on every atom
of it, or at least on the bad atoms for the fused pair kernels, which do it at
no cost), from every model (see :func:`poison_nonfinite`), never a finite
number that ignores its bad atoms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.neighbors import NeighborList, Neighbors
from nvalchemi_ase.ops import segment_broadcast, segment_sum, xyz_sum

DEFAULT_PROPERTIES: tuple[str, ...] = ("energy", "forces")


class ModelOutputError(RuntimeError):
    """A model returned something the engine cannot use (missing forces, wrong shapes)."""


@runtime_checkable
class Model(Protocol):
    """What the engine needs from a model: ``cutoff`` (Å), ``implemented_properties`` and the call."""

    @property
    def cutoff(self) -> float: ...

    @property
    def implemented_properties(self) -> Sequence[str]: ...

    def __call__(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]: ...


class BatchedModel(torch.nn.Module):
    """Base class for our models: a ``torch.nn.Module`` following :class:`Model`.

    Subclasses set ``cutoff`` and ``implemented_properties`` and implement
    ``forward(batch, properties)``; ``todict()`` gives their parameters (JSON types).
    """

    cutoff: float = 0.0
    implemented_properties: tuple[str, ...] = ("energy", "forces")

    extra_outputs: tuple[str, ...] = ()
    """Outputs beside ASE's properties this model gives when they are in ``properties``
    (:data:`~nvalchemi_ase.data.fields.FORCES_BOUND`); engines ask through ``request_property``."""

    propagates_nonfinite: bool = False
    """True when ``forward`` itself gives NaN for non-finite positions or cells (a fused kernel
    does, at no cost); else :meth:`__call__` poisons the results with :func:`poison_nonfinite`."""

    def __call__(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        """``forward``, with NaN results for systems whose positions or cell are not finite."""
        outputs = super().__call__(batch, properties)
        return outputs if self.propagates_nonfinite else poison_nonfinite(batch, outputs)

    def forward(
        self, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def todict(self) -> dict[str, Any]:
        """Constructor parameters, JSON-serialisable."""
        return {}

    def neighbors(self, batch: Batch) -> Neighbors:
        """The pairs to sum over: those a ``NeighborListHook`` put on the batch for this compute (when
        they reach this model's cutoff), else the model's own skin-reused ``self.neighbor_list``."""
        shared = getattr(batch, "neighbors", None)
        if isinstance(shared, Neighbors) and shared.cutoff >= self.cutoff:
            return shared
        own: NeighborList | None = getattr(self, "neighbor_list", None)
        if own is None:
            raise AttributeError(f"{type(self).__name__} has no neighbor_list of its own")
        return own.update(batch)


def volumes(cell: torch.Tensor) -> torch.Tensor:
    """``[B]`` cell volumes ``|a · (b × c)|``, Å³ (0 for cells that do not span 3D).

    A triple product rather than ``torch.linalg.det``, whose CUDA path may wait
    for the device to check for errors.
    """
    return (cell[:, 0] * torch.linalg.cross(cell[:, 1], cell[:, 2])).sum(dim=1).abs()


_ATOM_OUTPUTS = ("forces", "energies")


def poison_nonfinite(batch: Batch, outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``outputs`` with NaN for every system whose positions or cell hold NaN or ±Inf.

    Pure arithmetic (``x + 0·r`` is NaN exactly when ``r`` is not finite), so
    it never waits for the device; finite systems' values are unchanged.
    Energies, stress and per-atom values all follow their system.
    """
    atom_flags = xyz_sum(batch.positions.detach()) * 0.0  # [N]: 0, or NaN
    system_flags = segment_sum(atom_flags, batch.batch_idx, batch.num_graphs)
    system_flags = system_flags + batch.cell.detach().sum(dim=(1, 2)) * 0.0  # [B]
    atom_flags = segment_broadcast(system_flags, batch.batch_idx)
    poisoned = dict(outputs)
    for key, value in outputs.items():
        flags = atom_flags if key in _ATOM_OUTPUTS else system_flags
        if value.shape[:1] == flags.shape and value.is_floating_point():
            poisoned[key] = value + flags.to(value.dtype).view(-1, *([1] * (value.dim() - 1)))
    return poisoned


def evaluate(
    model: Model, batch: Batch, properties: Sequence[str] = DEFAULT_PROPERTIES
) -> dict[str, torch.Tensor]:
    """Call ``model`` and check what it returned (shapes and devices only: no host sync).

    Systems with non-finite positions or cell get NaN results whatever the
    model (see :func:`poison_nonfinite`); float outputs come back in the
    batch's dtype. What passes may be stored in the batch without further
    checks (:meth:`~nvalchemi_ase.data.Batch.assign`).

    Raises
    ------
    ModelOutputError
        When a requested energy or forces is missing, or an output has the wrong
        shape or lies on another device than the batch, naming the model and the field.
    """
    outputs = model(batch, properties)
    if not isinstance(model, BatchedModel):  # ours poison non-finite systems themselves
        outputs = poison_nonfinite(batch, outputs)
    for key in ("energy", "forces"):
        if key in properties and key not in outputs:
            raise ModelOutputError(
                f"model {type(model).__name__} did not return '{key}' (it returned {sorted(outputs)})"
            )
    atoms, systems = batch.num_nodes, batch.num_graphs
    device, dtype = batch.device, batch.dtype
    converted = None
    for key, value in outputs.items():
        expected = _expected_shape(key, atoms, systems)
        if expected is not None:
            if value.shape != expected:
                raise ModelOutputError(
                    f"model {type(model).__name__} returned '{key}' of shape {tuple(value.shape)}, "
                    f"expected {expected}"
                )
            if value.device != device:
                raise ModelOutputError(
                    f"model {type(model).__name__} returned '{key}' on {value.device}, "
                    f"the batch is on {device}"
                )
        if value.dtype != dtype and value.is_floating_point():  # a float32 network in a float64 batch
            if converted is None:
                converted = dict(outputs)
            converted[key] = value.to(dtype)
    return dict(outputs) if converted is None else converted  # the caller may edit its dict


def _expected_shape(key: str, atoms: int, systems: int) -> tuple[int, ...] | None:
    """The shape ``evaluate`` requires of output ``key`` (None: not checked)."""
    if key == "energy":
        return (systems, 1)
    if key == "forces":
        return (atoms, 3)
    if key == "stress":
        return (systems, 3, 3)
    if key == "energies":
        return (atoms,)
    return None
