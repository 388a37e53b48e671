"""MACE (``mace-torch``) models as batched models, fed from our neighbour list.

``load("mace:path/to/file.model")`` reads a MACE model file (``torch.save`` of
the module, as MACE's training writes it); ``load("mace-mp-small")`` and the
other foundation names call mace's own download (``mace_mp`` / ``mace_off``),
which needs the network the first time. The network runs without its force and
stress branch (``compute_force=False``): our autograd differentiates its energy.
MACE's edge convention is ours: ``edge_index = (sender, receiver)``, vectors
``positions[receiver] − positions[sender] + shifts``.
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.models.pretrained.common import pretrained_model
from nvalchemi_ase.models.registry import require

MACE_FOUNDATIONS = {
    "mace-mp-small": ("mace_mp", "small"),
    "mace-mp-medium": ("mace_mp", "medium"),
    "mace-mp-large": ("mace_mp", "large"),
    "mace-off-small": ("mace_off", "small"),
    "mace-off-medium": ("mace_off", "medium"),
    "mace-off-large": ("mace_off", "large"),
}


class MACEEnergy(torch.nn.Module):
    """A MACE network fed an :class:`AtomGraph`; ``head`` picks the head of a multi-head model.

    Parameters
    ----------
    network
        A ``mace.modules.MACE`` (or ``ScaleShiftMACE``) module.
    head
        The name of the head to evaluate (``None``: the first).
    """

    index_of: torch.Tensor
    """``[max Z + 1]`` long: each element's row in the network's one-hot table (-1: unknown)."""

    def __init__(self, network: Any, head: str | None = None) -> None:
        super().__init__()
        network.eval()
        self.network = network
        self.cutoff = float(network.r_max)
        heads = list(getattr(network, "heads", ["Default"]))
        if head is not None and head not in heads:
            raise ValueError(f"MACE model has no head {head!r} (it has {heads})")
        self.head = heads.index(head) if head is not None else 0
        species = network.atomic_numbers.long()
        table = torch.full((int(species.max()) + 1,), -1, dtype=torch.long)
        table[species] = torch.arange(species.numel())
        self.register_buffer("index_of", table, persistent=False)
        self.species = species.tolist()
        self._checked: tuple | None = None

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        numbers = graph.atomic_numbers
        seen = (numbers.data_ptr(), numbers.shape, numbers._version)
        if seen != self._checked:  # a new batch structure: check its elements once
            known = (numbers < self.index_of.numel()) & (
                self.index_of[numbers.clamp(max=self.index_of.numel() - 1)] >= 0
            )
            if not bool(known.all()):
                missing = sorted(set(numbers[~known].tolist()))
                raise ValueError(
                    f"MACE model does not know atomic numbers {missing} (it knows {self.species})"
                )
            self._checked = seen
        dtype = graph.positions.dtype
        node_attrs = torch.nn.functional.one_hot(self.index_of[numbers], len(self.species)).to(dtype)
        data = {
            "positions": graph.positions,
            "node_attrs": node_attrs,
            "edge_index": graph.edge_index,
            "shifts": graph.shifts,
            "unit_shifts": graph.unit_shifts.to(dtype),
            "cell": graph.cell.reshape(-1, 3),
            "batch": graph.batch,
            "ptr": graph.ptr,
            "head": torch.full((graph.num_systems,), self.head, dtype=torch.long, device=numbers.device),
        }
        out = self.network(data, training=False, compute_force=False)
        return {"energy": out["energy"], "energies": out["node_energy"]}


def load_mace(
    argument: str | None = None, *, name: str = "mace", head: str | None = None, **options: Any
) -> AutogradModel:
    """A MACE model file (``argument``) or a foundation model (``name``, fetched by mace).

    ``options``: ``dtype`` (default: the model's own, float64 for most files),
    ``skin``, ``max_neighbors``, ``compute_stress``, ``cpu_edges_per_pass``, ``flush_denormals``
    (see :class:`~nvalchemi_ase.models.AutogradModel`).
    """
    if argument:
        require("mace.modules", "mace", name)  # the file's classes must import
        network = torch.load(argument, map_location="cpu", weights_only=False)
    elif name in MACE_FOUNDATIONS:
        function, size = MACE_FOUNDATIONS[name]
        foundations = require("mace.calculators.foundations_models", "mace", name)
        network = getattr(foundations, function)(model=size, device="cpu", return_raw_model=True)
    else:
        raise ValueError(f"model '{name}' needs a file: load('mace:path/to/file.model')")
    dtype = options.pop("dtype", next(network.parameters()).dtype)
    return pretrained_model(MACEEnergy(network, head=head), dtype=dtype, properties=("energies",), **options)
