"""SevenNet (``sevenn``) checkpoints as batched models, fed from our neighbour list.

The checkpoint's network is run without its own force/stress head (our
autograd differentiates its energy instead), on the edge list of the whole
batch at once. SevenNet's convention matches ours: ``edge_index = (source,
destination)`` and ``edge_vec = pos[destination] − pos[source] + shift @ cell``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.models.pretrained.common import pretrained_model
from nvalchemi_ase.models.registry import require

SEVENNET_NAMES = ("7net-0", "7net-0_11jul2024", "7net-0_22may2024", "7net-l3i5")
"""The checkpoints the sevenn wheel ships (``sevennet-…`` spells the same ones)."""


class SevenNetEnergy(torch.nn.Module):
    """A SevenNet network, its force head removed: an :class:`AtomGraph` in, energies out.

    Parameters
    ----------
    network
        sevenn's ``AtomGraphSequential`` (as ``sevenn.util.model_from_checkpoint`` builds it).
    """

    def __init__(self, network: Any) -> None:
        super().__init__()
        keys = require("sevenn._keys", "sevenn", "SevenNet")
        network.delete_module_by_key("force_output")  # our autograd is the force head
        network.set_is_batch_data(True)
        network.key_grad = None
        network.eval()
        self.network = network
        self.keys = keys
        self.cutoff = float(network.cutoff)
        self.species = sorted(int(z) for z in network.type_map)
        self._checked: tuple | None = None

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        key = self.keys
        numbers = graph.atomic_numbers
        seen = (numbers.data_ptr(), numbers.shape, numbers._version)
        if seen != self._checked:  # a new batch structure: check its elements once
            _check_species(numbers, self.species)
            self._checked = seen
        data = {
            key.ATOMIC_NUMBERS: graph.atomic_numbers,
            key.POS: graph.positions,
            key.CELL: graph.cell,
            key.CELL_SHIFT: graph.unit_shifts.to(graph.positions.dtype),
            key.EDGE_IDX: graph.edge_index,
            key.EDGE_VEC: graph.edge_vectors,
            key.BATCH: graph.batch,
            key.NUM_ATOMS: graph.ptr[1:] - graph.ptr[:-1],
        }
        out = self.network(data)
        atomic = out[key.ATOMIC_ENERGY].reshape(-1)
        energy = torch.zeros(graph.num_systems, dtype=atomic.dtype, device=atomic.device)
        return {"energy": energy.index_add(0, graph.batch, atomic), "energies": atomic}


def load_sevennet(argument: str | None = None, *, name: str = "7net-0", **options: Any) -> AutogradModel:
    """A SevenNet checkpoint shipped with sevenn (``name``) or at a path (``argument``).

    ``options``: ``dtype`` (default float32, as trained), ``skin``, ``max_neighbors``,
    ``compute_stress``, ``cpu_edges_per_pass``, ``flush_denormals``
    (see :class:`~nvalchemi_ase.models.AutogradModel`).
    """
    with warnings.catch_warnings():  # sevenn scripts modules on import; torch 2.13 deprecates that, loudly
        warnings.filterwarnings("ignore", "`torch.jit.script` is deprecated", DeprecationWarning)
        util = require("sevenn.util", "sevenn", name)
        checkpoint = argument if argument else util.pretrained_name_to_path(name)
        network, _ = util.model_from_checkpoint(str(checkpoint))
    return pretrained_model(SevenNetEnergy(network), properties=("energies",), **options)


def _check_species(numbers: torch.Tensor, species: list[int]) -> None:
    """Elements the network was not trained on: an error naming them (SevenNet would index garbage)."""
    known = torch.zeros(int(max(species)) + 2, dtype=torch.bool, device=numbers.device)
    known[torch.tensor(species, device=numbers.device)] = True
    inside = numbers.clamp(max=known.numel() - 1)
    unknown = ~known[inside] | (numbers >= known.numel() - 1)
    if bool(unknown.any()):
        missing = sorted(set(numbers[unknown].tolist()))
        raise ValueError(f"SevenNet does not know atomic numbers {missing} (it knows {species})")
