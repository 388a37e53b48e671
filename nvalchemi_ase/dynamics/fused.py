"""``FusedStage``: several engines in one loop (relax + md), one shared force call per step.

``status[b]`` says which sub-stage system b is in; ``len(stages)`` means done.
One fused step, in order:

1. each sub-stage's BEFORE_STEP hooks;
2. for each sub-stage: BEFORE_PRE_UPDATE hooks, then its ``pre_update`` for its
   own systems;
3. one ``compute()`` for the whole batch, with the fused stage's own
   BEFORE_COMPUTE / AFTER_COMPUTE hooks around it (e.g. a neighbour list, or a
   ``FreezeAtomsHook``, which needs BEFORE_COMPUTE);
4. each sub-stage's AFTER_COMPUTE hooks;
5. for each sub-stage: its ``post_update`` for its own systems, then its
   AFTER_POST_UPDATE hooks;
6. each sub-stage's AFTER_STEP hooks, then the fused stage's own;
7. for each sub-stage: convergence of its systems, ON_CONVERGE hooks, and
   migration of converged systems (and of those whose step budget ran out)
   to the next status. A system moves at most one stage per step.

Systems with ``awaiting_forces`` set (an inflight refill puts new systems in
without computing forces for the whole batch) take no update in their first
step: its shared compute gives them their forces, and they enter sub-stage 0
at its end.

Sub-stages do not receive BEFORE_COMPUTE, AFTER_PRE_UPDATE or
BEFORE_POST_UPDATE (the forward pass is shared). The fused stage's own hooks
see the whole batch at BEFORE_STEP, BEFORE_PRE_UPDATE (before any sub-stage
update), BEFORE_COMPUTE, AFTER_COMPUTE, AFTER_POST_UPDATE (after all of them)
and AFTER_STEP. Each sub-stage's state
advances only for its own systems. The host hears about convergence once per
step (one device→host copy), and only when some sub-stage needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from ase import Atoms

from nvalchemi_ase.data import Batch, Scope
from nvalchemi_ase.dynamics.base import BaseDynamics, DynamicsStage
from nvalchemi_ase.dynamics.inflight import InflightSampler, run_inflight


class FusedStage(BaseDynamics):
    """Sub-stages advanced together, each on the systems whose ``status`` is its index.

    Parameters
    ----------
    stages
        The engines, in pipeline order (``relax + md`` builds ``FusedStage([relax, md])``).
        They share the first stage's model.
    n_steps
        Default cap on fused steps for :meth:`run`.
    hooks
        The fused stage's own hooks (fired around the shared compute and at
        BEFORE_STEP / AFTER_STEP on the whole batch), e.g. a ``NeighborListHook``.

    Notes
    -----
    A sub-stage's budget is its ``n_steps`` per system: a system that reaches
    it moves on; when that sub-stage has a convergence hook and the system
    had not converged, ``batch.unconverged[b]`` is set. A final sub-stage
    without ``n_steps`` or a convergence hook never finishes, so pass
    ``n_steps`` to :meth:`run`.
    """

    def __init__(
        self, stages: Sequence[BaseDynamics], n_steps: int | None = None, hooks: Iterable[Any] | None = None
    ):
        stages = list(stages)
        if not stages or not all(isinstance(s, BaseDynamics) for s in stages):
            raise TypeError("a FusedStage needs one or more BaseDynamics sub-stages")
        if any(isinstance(s, FusedStage) for s in stages):
            raise TypeError("nest fused stages by adding their sub-stages: (a + b) + c")
        if len({id(s) for s in stages}) != len(stages):
            raise ValueError("the same engine object appears twice; create one per sub-stage")
        self.stages = stages
        self.finished_any = False
        """Whether some system finished at the last step (read from the step's one host copy)."""
        self.finished_count = 0
        """How many systems of the batch had finished after the last step (same host copy)."""
        self._occupied: list[bool] | None = None
        """Which sub-stages held systems after the last step (read with its host copy); None: assume all."""
        self._entering = False
        """Whether some systems may await their forces (``awaiting_forces``): set by :meth:`adopt`."""
        self._members: list[torch.Tensor] = []
        self._status_tables: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        super().__init__(stages[0].model, dt=1.0, n_steps=n_steps, hooks=hooks)
        for stage in stages:
            self.properties |= stage.properties
            stage.properties = self.properties  # one compute serves them all

    def __repr__(self) -> str:
        names = ", ".join(f"{k}:{type(s).__name__}" for k, s in enumerate(self.stages))
        return f"FusedStage(stages=[{names}], n_steps={self.n_steps}, step_count={self.step_count})"

    @property
    def exit_status(self) -> int:
        """The status of finished systems: the number of sub-stages."""
        return len(self.stages)

    # ------------------------------------------------------------------ state
    def init_state(self, batch: Batch) -> None:
        for name, default in (("stage_steps", 0), ("unconverged", False), ("awaiting_forces", False)):
            if name not in batch.field_names():
                dtype = torch.bool if isinstance(default, bool) else torch.long
                batch.add_field(
                    name,
                    torch.full((batch.num_graphs,), default, dtype=dtype, device=batch.device),
                    Scope.SYSTEM,
                )
        for stage in self.stages:
            stage.batch = batch
            stage.init_state(batch)
        self.done = False
        self._occupied = None

    def enter(self, batch: Batch, systems: torch.Tensor) -> None:
        """New systems start in the first sub-stage (those with status 0 enter it)."""
        self.stages[0].enter(batch, systems & (batch.status == 0))

    def adopt(self, batch: Batch) -> None:
        """Continue on ``batch``, a re-formed (refilled) batch whose systems have their state.

        New systems in it have ``awaiting_forces`` set: the next step computes
        their forces with everyone else's and they enter sub-stage 0 after it.
        """
        self.batch = batch
        self.init_state(batch)
        self._entering = True

    def run_inflight(
        self,
        sampler: InflightSampler,
        sinks: Sequence[Any] = (),
        n_steps: int | None = None,
        on_finish: Callable[[int], None] | None = None,
        on_step: Callable[[int], None] | None = None,
        results: dict[int, Atoms] | None = None,
        *,
        batch: Batch | None = None,
    ) -> list[Atoms]:
        """Stream every structure of ``sampler`` through the pipeline, refilling as systems finish.

        See :func:`nvalchemi_ase.dynamics.inflight.run_inflight` (``batch`` and
        ``results`` continue a checkpointed run). Returns the final structures in input order.
        """
        with self.opened_hooks():
            return run_inflight(self, sampler, sinks, n_steps, on_finish, on_step, results, batch=batch)

    def _hooked_engines(self) -> list[BaseDynamics]:
        return [self, *self.stages]

    def _bind(self, batch: Batch | None) -> Batch:
        if batch is not None and batch is not self.batch:
            for stage in self.stages:
                if isinstance(stage.model, torch.nn.Module):
                    stage.model.to(batch.device)
        return super()._bind(batch)

    # ------------------------------------------------------------------ the fused step
    def step(self, batch: Batch | None = None) -> Batch:
        """One fused step; returns the (same) batch (interrupted: as ``BaseDynamics.step``)."""
        try:
            return super().step(batch)
        finally:
            for stage in self.stages:
                stage.step_count = self.step_count

    def _masks(self, batch: Batch) -> torch.Tensor:
        """``[2S, B]`` bool rows reused step after step: each sub-stage's members, then its converged
        (see :meth:`~nvalchemi_ase.dynamics.BaseDynamics._scratch_mask`)."""
        return self._scratch_mask((2 * len(self.stages), batch.num_graphs), batch.device)

    def _advance(self, batch: Batch) -> None:
        masks = self._masks(batch)
        self._members = members = [torch.eq(batch.status, k, out=masks[k]) for k in range(len(self.stages))]
        if self._entering:  # systems awaiting their forces take no update this step
            torch.logical_and(members[0], ~batch.awaiting_forces, out=members[0])
        self._call_hooks(DynamicsStage.BEFORE_STEP, batch)
        for stage in self.stages:
            stage._call_hooks(DynamicsStage.BEFORE_STEP, batch)
        self._call_hooks(DynamicsStage.BEFORE_PRE_UPDATE, batch)
        occupied = self._occupied or [True] * len(self.stages)
        for stage, mine, busy in zip(self.stages, members, occupied, strict=True):
            stage._call_hooks(DynamicsStage.BEFORE_PRE_UPDATE, batch)
            if busy:  # a sub-stage without systems does no update work
                stage.masked_pre_update(batch, mine)
        self._call_hooks(DynamicsStage.BEFORE_COMPUTE, batch)
        self.compute(batch)
        self._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        for stage in self.stages:
            stage._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        for stage, mine, busy in zip(self.stages, members, occupied, strict=True):
            if busy:
                stage.masked_post_update(batch, mine)
            stage._call_hooks(DynamicsStage.AFTER_POST_UPDATE, batch)
        self._call_hooks(DynamicsStage.AFTER_POST_UPDATE, batch)

    def _finish(self, batch: Batch) -> None:
        for stage in self.stages:
            stage._call_hooks(DynamicsStage.AFTER_STEP, batch)
        self._call_hooks(DynamicsStage.AFTER_STEP, batch)
        self._migrate(batch, self._members)

    def _migrate(self, batch: Batch, members: list[torch.Tensor]) -> None:
        """Convergence, ON_CONVERGE and migration, with at most one device→host copy.

        The convergence tests are the sub-stages' hooks (torch); who moves on,
        who ran out of steps and how many systems each status holds is one
        kernel over the batch (:func:`~nvalchemi_ase.ops.migration.migrate`).
        """
        count = len(self.stages)
        occupied = self._occupied or [True] * count
        converged: dict[int, torch.Tensor] = {}
        done = None
        masks = self._masks(batch)
        for k, (stage, mine, busy) in enumerate(zip(self.stages, members, occupied, strict=True)):
            if stage.convergence_hook is not None and busy:
                passed = stage.convergence_hook.evaluate(batch)
                converged[k] = torch.logical_and(mine, passed, out=masks[count + k])
                done = converged[k] if done is None else done | converged[k]
        budgets, hooked = self._tables(batch.device)
        status = batch.status
        moved = _migration().migrate(
            status,
            batch.stage_steps,
            batch.unconverged,
            done,
            batch.awaiting_forces if self._entering else None,
            budgets,
            hooked,
        )
        # the kernel's outputs are made like the batch's own fields: no checks needed
        for name in ("status", "stage_steps", "unconverged"):
            batch.assign(name, getattr(moved, name))
        for k in range(count - 1):
            if not self.stages[k + 1]._enters_quietly():
                self.stages[k + 1].enter(batch, moved.leaving & (status == k))
        if self._entering:  # forces computed: the systems that awaited them enter sub-stage 0
            entering = batch.awaiting_forces
            batch.assign("awaiting_forces", torch.zeros_like(entering))
            self.enter(batch, entering)
            self._entering = False
        listening = [k for k in converged if self.stages[k].hooks_at(DynamicsStage.ON_CONVERGE)]
        flags = [converged[k].any().to(torch.int32).view(1) for k in listening]
        *fired, finished_count = torch.cat([*flags, moved.population]).tolist()
        any_converged, self._occupied = fired[: len(listening)], [bool(n) for n in fired[len(listening) :]]
        self.finished_count = finished_count
        self.finished_any = finished_count > 0
        for k, flag in zip(listening, any_converged, strict=True):
            if flag:
                mask = converged[k].clone()  # the hooks' own: the row is written again next step
                self.stages[k]._call_hooks(DynamicsStage.ON_CONVERGE, batch, converged_mask=mask)
        self.done = finished_count == batch.num_graphs

    def _tables(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sub-stage its step budget (``[S]``, the largest int64 without one) and whether it
        has a convergence hook (``[S]`` bool); made once per device and set of budgets."""
        budgets = [torch.iinfo(torch.long).max if s.n_steps is None else s.n_steps for s in self.stages]
        hooked = [s.convergence_hook is not None for s in self.stages]
        key = (device, tuple(budgets), tuple(hooked))
        if self._status_tables is None or self._status_tables[0] != key:
            tables = (
                torch.tensor(budgets, dtype=torch.long, device=device),
                torch.tensor(hooked, dtype=torch.bool, device=device),
            )
            self._status_tables = (key, tables)
        return self._status_tables[1]

    def run(self, batch: Batch | None = None, n_steps: int | None = None) -> Batch:
        """Step until every system is done (status == number of sub-stages) or ``n_steps`` fused steps.

        With ``n_steps`` None here and in the constructor, runs until all are done.
        """
        steps = self.n_steps if n_steps is None else n_steps
        with self.opened_hooks():
            batch = self.prime(batch)
            taken = 0
            while not self.done and (steps is None or taken < steps):
                self.step(batch)
                taken += 1
        return batch


def fuse(first: BaseDynamics, second: BaseDynamics) -> FusedStage:
    """``first + second``: one pipeline of their sub-stages (``(a + b) + c`` has three).

    A fused left operand passes on its own hooks and ``n_steps``.
    """
    left = first.stages if isinstance(first, FusedStage) else [first]
    right = second.stages if isinstance(second, FusedStage) else [second]
    if isinstance(first, FusedStage):
        return FusedStage([*left, *right], n_steps=first.n_steps, hooks=first.hooks)
    return FusedStage([*left, *right])


@functools.cache
def _migration() -> Any:
    """:mod:`nvalchemi_ase.ops.migration`, imported on first use (it loads warp), looked up once."""
    from nvalchemi_ase.ops import migration

    return migration
