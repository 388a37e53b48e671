"""CHGNet (``chgnet``) as a batched model, its graphs built from our neighbour list on the device.

CHGNet reads two graphs: the atom graph (every bond within ``atom_graph_cutoff``,
6 Å for the shipped weights, both ways, each pair of directions sharing one
*undirected* bond feature) and the bond graph (the angles between bonds
shorter than ``bond_graph_cutoff``, 3 Å, that leave the same atom). CHGNet's
own converter builds both per structure on the host with pymatgen; here they
come from our batched edge list, its reverse-edge index and angle triplets
(:mod:`nvalchemi_ase.neighbors.graph`), for the whole batch at once. The network
then runs through CHGNet's ``_compute`` without its force and stress branch:
our autograd differentiates its energy.

Outputs besides energy, forces and stress: per-atom energies ``energies [N]``
(CHGNet's site energies plus its per-element reference energies, summing to the
energy) and magnetic moments ``magmoms [N]`` (μB, the magnitude CHGNet predicts per site).
"""

from __future__ import annotations

from typing import Any

import torch

from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.models.pretrained.common import pretrained_model
from nvalchemi_ase.models.registry import require

CHGNET_VERSIONS = {
    "chgnet": "0.3.0",
    "chgnet-0.3.0": "0.3.0",
    "chgnet-0.2.0": "0.2.0",
    "chgnet-r2scan": "r2scan",
}


CHGNET_CPU_EDGES_PER_PASS = 4096
"""Edges per pass of CHGNet's network on CPU (the other adapters take 2,048). 32 copper structures, subnormals
flushed, passes of 1,024 to 8,192 edges and one pass, interleaved, three runs: 4,096 took 1.91, 0.996
(two threads) and 2.07 s against 2.05, 1.105 and 2.21 s at 2,048."""


class CHGNetEnergy(torch.nn.Module):
    """A CHGNet network fed an :class:`AtomGraph` (with reverse edges and angle triplets).

    Parameters
    ----------
    network
        A ``chgnet.model.CHGNet``.
    """

    def __init__(self, network: Any) -> None:
        super().__init__()
        network.eval()
        # Frozen weights: forces and stress are derivatives in positions and strain only, and a
        # backward pass that need not track the weights ran about 15 % faster (8 structures, same bits).
        network.requires_grad_(False)
        self.network = network
        self.cutoff = float(network.graph_converter.atom_graph_cutoff)
        self.angle_cutoff = float(network.graph_converter.bond_graph_cutoff)
        self.batched_graph = require("chgnet.model.model", "chgnet", "chgnet").BatchedGraph

    def forward(self, graph: AtomGraph) -> dict[str, torch.Tensor]:
        assert graph.reverse_edge is not None and graph.triplets is not None, (
            "needs reverse edges and triplets"
        )
        network = self.network
        sender = graph.edge_index[0]
        directed = graph.edge_vectors.shape[0]
        # One undirected bond per pair of directions: the direction with the smaller index names it.
        canonical = torch.arange(directed, device=sender.device) < graph.reverse_edge
        undirected2directed = canonical.nonzero().squeeze(1)
        bond_of = torch.zeros(directed, dtype=torch.long, device=sender.device)
        bond_of[undirected2directed] = torch.arange(undirected2directed.numel(), device=sender.device)
        directed2undirected = torch.where(canonical, bond_of, bond_of[graph.reverse_edge])

        lengths = graph.edge_vectors.norm(dim=1)
        unit = -graph.edge_vectors / lengths.unsqueeze(1)  # CHGNet's bond vector points centre − neighbour
        expansion = network.bond_basis_expansion
        bond_lengths = lengths[undirected2directed]
        first, second = graph.triplets.unbind(1)
        bond_graph = torch.stack([sender[first], directed2undirected[first], directed2undirected[second]], 1)
        batched = self.batched_graph(
            atomic_numbers=graph.atomic_numbers,
            bond_bases_ag=expansion.rbf_expansion_ag(bond_lengths),
            bond_bases_bg=expansion.rbf_expansion_bg(bond_lengths),
            angle_bases=network.angle_basis_expansion(unit[first], unit[second]),
            batched_atom_graph=graph.edge_index.T,
            batched_bond_graph=bond_graph,
            atom_owners=graph.batch,
            directed2undirected=directed2undirected,
            atom_positions=[],
            strains=[],
            volumes=[],
        )
        prediction = network._compute(batched, compute_magmom=True, return_site_energies=True)
        counts = (graph.ptr[1:] - graph.ptr[:-1]).to(prediction["e"].dtype)
        energy = prediction["e"] * counts if network.is_intensive else prediction["e"]
        site = torch.cat(prediction["site_energies"])
        if network.composition_model is not None:
            reference = network.composition_model.fc.weight[0, graph.atomic_numbers - 1]
            energy = energy + torch.zeros_like(energy).index_add(0, graph.batch, reference)
            site = site + reference
        return {"energy": energy, "energies": site, "magmoms": torch.cat(prediction["m"])}


def load_chgnet(argument: str | None = None, *, name: str = "chgnet", **options: Any) -> AutogradModel:
    """CHGNet's shipped weights (``name``) or a CHGNet file (``argument``, read by ``CHGNet.from_file``).

    ``options``: ``dtype`` (default float32, as trained), ``skin``, ``max_neighbors``,
    ``compute_stress``, ``cpu_edges_per_pass``, ``flush_denormals``
    (see :class:`~nvalchemi_ase.models.AutogradModel`).
    """
    chgnet_model = require("chgnet.model", "chgnet", name)
    if argument:
        network = chgnet_model.CHGNet.from_file(argument)
    else:
        network = chgnet_model.CHGNet.load(model_name=CHGNET_VERSIONS[name], use_device="cpu", verbose=False)
    module = CHGNetEnergy(network)
    options.setdefault("cpu_edges_per_pass", CHGNET_CPU_EDGES_PER_PASS)
    return pretrained_model(
        module,
        reverse_edges=True,
        angle_cutoff=module.angle_cutoff,
        angle_first_at_cutoff=True,  # CHGNet's line graph: first bond <= 3 Å, second < 3 Å
        properties=("energies", "magmoms"),
        **options,
    )
