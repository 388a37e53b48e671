"""The worker's side: run one chunk of structures with inflight batching, return what it made.

Nothing is written on the worker: final structures, trajectory frames and log
rows travel back in a :class:`ChunkResult`, and the client writes them. A chunk
that runs twice (its worker died, Dask ran it again elsewhere) therefore leaves
one set of outputs.
"""

from __future__ import annotations

import os
import socket
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.data import Batch
from nvalchemi_ase.distributed.spec import ChunkPlan, ModelSpec, warm_model
from nvalchemi_ase.dynamics.fused import FusedStage
from nvalchemi_ase.dynamics.inflight import InflightSampler
from nvalchemi_ase.hooks.logging import LoggingHook
from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.sinks.base import selected_systems

__all__ = ["ChunkResult", "run_chunk"]


@dataclass
class ChunkResult:
    """What one chunk produced; every structure is named by its index in the whole input."""

    indices: list[int]
    """The input indices of the chunk's structures, in input order."""
    final: list[Atoms]
    """Final structures, in the order of ``indices`` (``info["system_id"]`` is the input index)."""
    frames: dict[int, list[Atoms]] = field(default_factory=dict)
    """Trajectory frames by input index, in step order (the final frame last)."""
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    """Log rows (``LoggingHook`` columns; ``system`` is the input index)."""
    set_aside: dict[int, str] = field(default_factory=dict)
    """Structures a hook set aside mid-run, with the reason, by input index (a hook
    with a ``set_aside`` mapping, as the command line's check for non-finite forces)."""
    fused_steps: int = 0
    atom_steps: int = 0
    seconds: float = 0.0
    worker: str = ""
    """``host:pid`` of the process that ran it."""


class _FrameRecorder:
    """A hook and a sink at once: keeps frames on the host, by input index.

    Frames carry ``info["step"]`` (the chunk's fused steps completed) and
    ``info["stage"]`` (the sub-stage), as the command line's trajectories do.
    """

    stage = DynamicsStage.AFTER_STEP

    def __init__(self, frequency: int, pipeline: FusedStage) -> None:
        self.frequency = frequency
        self.pipeline = pipeline
        self.frames: dict[int, list[Atoms]] = defaultdict(list)

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        self.write(ctx.batch, step=ctx.step_count + 1)

    def write(
        self, batch: Batch, mask: torch.Tensor | np.ndarray | None = None, step: int | None = None
    ) -> None:
        systems = selected_systems(batch, mask)
        if systems.size == 0:
            return
        chosen = batch.index_select(systems)
        step = self.pipeline.step_count if step is None else step
        stages = chosen.status.tolist()
        for index, atoms, stage in zip(chosen.system_id.tolist(), chosen.to_atoms(), stages, strict=True):
            atoms.info.update(step=int(step), stage=int(stage))
            self.frames[index].append(atoms)


def run_chunk(chunk: Sequence[tuple[int, Atoms]], model: ModelSpec, plan: ChunkPlan) -> ChunkResult:
    """Run ``plan``'s pipeline over ``chunk`` (pairs of input index and structure) on this worker."""
    start = time.perf_counter()
    if plan.threads is not None:
        torch.set_num_threads(plan.threads)
    indices = [index for index, _ in chunk]
    pipeline = plan.build(warm_model(model))
    if not isinstance(pipeline, FusedStage):
        pipeline = FusedStage([pipeline])
    recorder = _FrameRecorder(plan.trajectory_interval or 1, pipeline)
    if plan.trajectory_interval is not None:
        pipeline.register_hook(recorder)
    rows: list[dict[str, Any]] = []
    if plan.log_interval is not None:
        pipeline.register_hook(
            LoggingHook(
                frequency=plan.log_interval,
                backend="custom",
                custom_scalars=plan.log_scalars,
                writer_fn=lambda step, new: rows.extend(new),
            )
        )
    sampler = InflightSampler(
        [atoms for _, atoms in chunk],
        max_atoms=plan.max_atoms,
        max_systems=plan.max_systems,
        device=plan.device,
        dtype=getattr(torch, plan.dtype),
        ids=indices,  # input indices as system ids: the noise streams of a one-process run
    )
    atom_steps = 0

    def count(atoms: int) -> None:
        nonlocal atom_steps
        atom_steps += atoms

    sinks = [recorder] if plan.trajectory_interval is not None else []
    final = pipeline.run_inflight(sampler, sinks=sinks, n_steps=plan.n_steps, on_step=count)
    set_aside: dict[int, str] = {}
    for hook in pipeline.hooks:
        set_aside.update(getattr(hook, "set_aside", {}))
    return ChunkResult(
        indices=indices,
        final=final,
        frames=dict(recorder.frames),
        log_rows=rows,
        set_aside=set_aside,
        fused_steps=pipeline.step_count,
        atom_steps=atom_steps,
        seconds=time.perf_counter() - start,
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
