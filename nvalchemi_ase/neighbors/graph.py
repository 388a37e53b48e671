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

Each call syncs with the host once to size its output (as the edge list does).
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
    shifts = unit_shifts.long()
    # Shift vectors are few: give each distinct one (and its negative) a dense code.
    _, codes = torch.unique(torch.cat([shifts, -shifts]), dim=0, return_inverse=True)
    distinct = int(codes.max()) + 1 if codes.numel() else 1
    forward_code, backward_code = codes.split(shifts.shape[0])
    forward = (sender * num_nodes + receiver) * distinct + forward_code
    backward = (receiver * num_nodes + sender) * distinct + backward_code
    order = torch.argsort(forward)
    position = torch.searchsorted(forward[order], backward).clamp(max=max(forward.numel() - 1, 0))
    reverse = order[position]
    if forward.numel() and not bool((forward[reverse] == backward).all()):
        raise ValueError("reverse_edges: some edge (i, j, S) has no reverse (j, i, -S) in the list")
    return reverse


def angle_triplets(edge_index: torch.Tensor, edge_lengths: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``[A, 2]`` long: ordered pairs ``(e1, e2)`` of distinct edges with the same sender.

    Only edges shorter than ``cutoff`` take part. The angle of a triplet sits at
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
    """
    device = edge_index.device
    short = (edge_lengths < cutoff).nonzero().squeeze(1)
    sender = edge_index[0, short]
    order = torch.sort(sender, stable=True).indices
    short, sender = short[order], sender[order]
    # Each short edge pairs with the other short edges of its sender.
    _, per_sender = torch.unique_consecutive(sender, return_counts=True)
    first_of_group = torch.cumsum(per_sender, 0) - per_sender
    group_size = torch.repeat_interleave(per_sender, per_sender)
    group_start = torch.repeat_interleave(first_of_group, per_sender)
    local = torch.arange(short.numel(), device=device) - group_start
    partners = group_size - 1
    total = int(partners.sum())
    first = torch.repeat_interleave(torch.arange(short.numel(), device=device), partners, output_size=total)
    pair_start = torch.repeat_interleave(torch.cumsum(partners, 0) - partners, partners, output_size=total)
    k = torch.arange(total, device=device) - pair_start  # 0 .. partners − 1
    second_local = k + (k >= local[first]).long()  # skip the edge itself
    second = group_start[first] + second_local
    return torch.stack([short[first], short[second]], dim=1)
