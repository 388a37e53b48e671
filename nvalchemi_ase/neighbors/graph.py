"""What message-passing potentials need beyond the edge list: reverse edges and angle triplets.

Both are built for the whole batch at once on its device, from an edge list in
the ``(sender, receiver, unit_shift)`` convention of
:class:`~nvalchemi_ase.models.AtomGraph` (every pair listed both ways, no pair
across systems):

* :func:`reverse_edges`: for edge ``e = (i, j, S)`` the index of ``(j, i, −S)``,
  which carries the same bond the other way (CHGNet shares one bond feature
  between the two; DimeNet-style models pass messages along ``e ← reverse(e)``).
* :func:`angle_triplets`: every ordered pair of distinct edges leaving the same
  atom, both shorter than a second cutoff: the angles that CHGNet, M3GNet and
  DimeNet-style models embed.

Each call syncs with the host to size its output (as the edge list does); no
Python loop runs over systems, atoms or edges.
"""

from __future__ import annotations

import torch


def reverse_edges(edge_index: torch.Tensor, unit_shifts: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """``[E]`` long: the index of each edge's reverse.

    Parameters
    ----------
    edge_index
        ``[2, E]`` long, ``(sender, receiver)``.
    unit_shifts
        ``[E, 3]`` integer cell shifts of the receiver's image.
    num_nodes
        N, the number of atoms (bounds the indices).

    Raises
    ------
    ValueError
        When some edge has no reverse in the list (the list is not symmetric).
    """
    sender, receiver = edge_index
    if sender.numel() == 0:
        return torch.zeros(0, dtype=torch.long, device=sender.device)
    shifts = unit_shifts.long()
    # Each shift S as one integer in [0, width³), and −S as width³ − 1 − code(S): no sort, no unique.
    reach = int(shifts.abs().max())
    width = 2 * reach + 1
    codes = width**3
    if num_nodes * num_nodes * codes >= 2**62:
        raise ValueError(
            f"reverse_edges: {num_nodes} atoms with cell shifts up to {reach} overflow the int64 edge keys"
        )
    offset = shifts + reach
    code = (offset[:, 0] * width + offset[:, 1]) * width + offset[:, 2]
    forward = (sender * num_nodes + receiver) * codes + code
    backward = (receiver * num_nodes + sender) * codes + (codes - 1 - code)
    order = torch.argsort(forward)
    position = torch.searchsorted(forward[order], backward).clamp(max=forward.numel() - 1)
    reverse = order[position]
    if not bool((forward[reverse] == backward).all()):
        raise ValueError("reverse_edges: some edge (i, j, S) has no reverse (j, i, -S) in the list")
    return reverse


def angle_triplets(
    edge_index: torch.Tensor,
    edge_lengths: torch.Tensor,
    cutoff: float,
    *,
    first_at_cutoff: bool = False,
) -> torch.Tensor:
    """``[A, 2]`` long: ordered pairs ``(e1, e2)`` of distinct edges with the same sender.

    Only edges shorter than ``cutoff`` take part (see ``first_at_cutoff``). The angle of a triplet sits at
    the common sender ``edge_index[0, e1]``, between the bonds ``e1`` and ``e2``.
    Triplets are grouped by sender, and by ``e1`` within a sender.

    Parameters
    ----------
    edge_index
        ``[2, E]`` long, ``(sender, receiver)``.
    edge_lengths
        ``[E]`` Å.
    cutoff
        Å, the second, shorter cutoff of the bonds that form angles.
    first_at_cutoff
        Whether the first bond ``e1`` may also be exactly ``cutoff`` long (the second
        stays strictly shorter): CHGNet's rule (``chgnet.graph.Graph.line_graph_adjacency_list``).
    """
    device = edge_index.device
    second = edge_lengths < cutoff
    member = (edge_lengths <= cutoff) if first_at_cutoff else second
    short = member.nonzero().squeeze(1)
    sender = edge_index[0, short]
    # By sender; within a sender the edges that may be second come first.
    order = torch.sort(2 * sender + (~second[short]).long(), stable=True).indices
    short, sender = short[order], sender[order]
    _, per_sender = torch.unique_consecutive(sender, return_counts=True)
    group = torch.repeat_interleave(torch.arange(per_sender.numel(), device=device), per_sender)
    seconds_per_sender = torch.zeros_like(per_sender).index_add_(0, group, second[short].long())
    group_start = (torch.cumsum(per_sender, 0) - per_sender)[group]
    seconds = seconds_per_sender[group]
    local = torch.arange(short.numel(), device=device) - group_start
    # Each edge pairs with the other may-be-second edges of its sender.
    partners = seconds - (local < seconds).long()
    total = int(partners.sum())
    first = torch.repeat_interleave(torch.arange(short.numel(), device=device), partners, output_size=total)
    pair_start = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners, output_size=total)
    k = torch.arange(total, device=device) - pair_start  # 0 .. partners − 1
    partner = group_start[first] + k + (k >= local[first]).long()  # skip the edge itself
    return torch.stack([short[first], short[partner]], dim=1)
