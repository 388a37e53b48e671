"""``NeighborListHook``: one Verlet-skin neighbour list, shared with the model for each compute.

At ``BEFORE_COMPUTE`` the hook updates its own
:class:`~nvalchemi_ase.neighbors.NeighborList` on the batch (rebuilding only the
systems in which an atom moved more than ``skin / 2`` since their last build)
and sets ``batch.neighbors`` to the resulting
:class:`~nvalchemi_ase.neighbors.Neighbors`; a model that finds
``batch.neighbors`` with ``neighbors.cutoff`` at least its own cutoff uses it
instead of building its own. At ``AFTER_COMPUTE`` the attribute is removed
again, so no list outlives the compute it was built for.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.neighbors import NeighborList

if TYPE_CHECKING:
    from nvalchemi_ase.data import Batch
    from nvalchemi_ase.hooks.protocol import HookContext

ATTRIBUTE = "neighbors"
"""Name of the plain (non-field) ``Batch`` attribute that carries the list during a compute."""


class NeighborListHook:
    """Build the neighbour list once per compute, outside the model, with a Verlet skin.

    Parameters
    ----------
    cutoff
        Å, the interaction cutoff the pairs must cover; at least the model's
        ``cutoff`` (checked when the hook is registered).
    skin
        Å, extra search radius: a system's pairs are reused until one of its
        atoms has moved more than ``skin / 2`` (or its cell changed).
    max_neighbors
        Room per atom in the list (``None``: sized from the first build).
    frequency
        Must be 1: a list refreshed only every few steps would be stale.

    Attributes
    ----------
    neighbor_list
        The :class:`~nvalchemi_ase.neighbors.NeighborList` this hook updates.

    Notes
    -----
    The list is searched out to ``cutoff + skin`` (``batch.neighbors.cutoff``);
    models keep only the pairs within their own cutoff. On CUDA the update does
    not wait for the device (see :class:`~nvalchemi_ase.neighbors.NeighborList`).
    """

    stage: enum.Enum | None = None

    def __init__(
        self,
        cutoff: float,
        skin: float = 0.5,
        max_neighbors: int | None = None,
        frequency: int = 1,
    ) -> None:
        if not cutoff > 0.0:
            raise ValueError(f"NeighborListHook: cutoff must be positive, got {cutoff!r}")
        if not skin >= 0.0:
            raise ValueError(f"NeighborListHook: skin must be non-negative, got {skin!r}")
        if isinstance(frequency, bool) or frequency != 1:
            raise ValueError(
                f"NeighborListHook: frequency must be 1 (a list that skips steps is stale), got {frequency!r}"
            )
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.frequency = 1
        self.stages = (DynamicsStage.BEFORE_COMPUTE, DynamicsStage.AFTER_COMPUTE)
        self.neighbor_list = NeighborList(self.cutoff, skin=self.skin, max_neighbors=max_neighbors)
        self._batch: Batch | None = None

    @property
    def rebuilds(self) -> int:
        """System rebuilds so far (counted when the list checks on the host: always on CPU)."""
        return self.neighbor_list.rebuilds

    def on_register(self, engine: Any) -> None:
        """Refuse an engine whose model needs pairs beyond this hook's cutoff.

        Raises
        ------
        ValueError
            The model's ``cutoff`` exceeds the hook's ``cutoff``.
        """
        model_cutoff = getattr(getattr(engine, "model", None), "cutoff", None)
        if model_cutoff is not None and float(model_cutoff) > self.cutoff:
            raise ValueError(
                f"NeighborListHook: cutoff {self.cutoff} Å is below the model's cutoff "
                f"{float(model_cutoff)} Å; the list would miss pairs"
            )

    def __call__(self, ctx: HookContext, stage: enum.Enum) -> None:
        """Set ``batch.neighbors`` before the compute; remove it after."""
        before, _ = self.stages
        if stage == before:
            ctx.batch.neighbors = self.neighbor_list.update(ctx.batch)
            self._batch = ctx.batch
        else:
            self._drop(ctx.batch)

    def close(self) -> None:
        """Remove a list left on the batch when a compute was interrupted (``run()`` calls this)."""
        if self._batch is not None:
            self._drop(self._batch)

    def reset(self) -> None:
        """Forget the last build: the next compute rebuilds every system."""
        self.neighbor_list.reset()

    def _drop(self, batch: Batch) -> None:
        self._batch = None
        try:
            delattr(batch, ATTRIBUTE)
        except AttributeError:
            pass  # already gone (AFTER_COMPUTE without a BEFORE_COMPUTE, or closed twice)

    def __repr__(self) -> str:
        return (
            f"NeighborListHook(cutoff={self.cutoff}, skin={self.skin}, "
            f"max_neighbors={self.neighbor_list.user_max_neighbors})"
        )
