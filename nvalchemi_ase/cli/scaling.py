"""Runs beyond one process and one job: Dask workers, checkpoints and ``resume``.

``run ... --workers N`` starts a local Dask cluster of N worker processes,
``--scheduler ADDRESS`` uses a running one: chunks of ``--chunk-size``
structures go to the workers and the client writes the files a one-process run
writes (:class:`~nvalchemi_ase.distributed.outputs.ChunkWriter`).
``--checkpoint-every K`` checkpoints a one-process run every K fused steps and
on SIGTERM. Every run records its options in ``run.json``, so ``nvalchemi-ase
resume OUTPUT_DIR`` continues it: from its checkpoint or, for a distributed
run, skipping the structures already done.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ase import Atoms

from nvalchemi_ase.cli.checkpointing import Checkpointing, load_run_record, save_run_record
from nvalchemi_ase.cli.checks import SetAside
from nvalchemi_ase.cli.models import CommandLineError, make_model
from nvalchemi_ase.cli.pipeline import (
    LOG_SCALARS,
    Settings,
    Summary,
    _SetAsideNonFinite,
    _write_final,
    build_pipeline,
    outputs_of,
    run,
)
from nvalchemi_ase.models.base import Model


def resumed_options(args: argparse.Namespace) -> argparse.Namespace:
    """The options of the run recorded in ``args.output_dir``, marked as resuming."""
    options = load_run_record(Path(args.output_dir))
    options.update(resume=True, quiet=args.quiet, output=str(args.output_dir))
    return argparse.Namespace(**options)


def record_run(args: argparse.Namespace, output: Path) -> None:
    """``run.json`` for a fresh run (a resumed one keeps its record)."""
    if getattr(args, "resume", False):
        return
    options = {k: v for k, v in vars(args).items() if k != "resume"}
    if options.get("input") is not None:
        options["input"] = os.path.abspath(options["input"])
    save_run_record(output, options)


def execute(
    args: argparse.Namespace,
    client: Any,
    structures: Sequence[Atoms],
    aside: Sequence[SetAside],
    model_name: str,
    parameters: dict[str, Any],
    model: Model,
    settings: Settings,
    progress: Any,
) -> Summary:
    """One process (checkpointed or not), or the Dask cluster of ``client`` (from :func:`connect`)."""
    resume = getattr(args, "resume", False)
    if client is not None:
        return _run_distributed(args, client, structures, aside, model_name, parameters, settings, progress)
    checkpointing = None
    if args.checkpoint_every is not None:
        checkpointing = Checkpointing(settings.output, args.checkpoint_every, resume=resume)
    return run(
        structures,
        model,
        settings,
        set_aside=aside,
        progress=progress,
        strict=args.strict,
        checkpointing=checkpointing,
    )


def worker_pipeline(model: Model, settings: Settings) -> Any:
    """The command line's pipeline as a worker builds it (its outputs go back to the client)."""
    exit_status = int(settings.relax) + int(settings.md)
    return build_pipeline(model, settings, [_SetAsideNonFinite(exit_status, strict=False)])


@contextlib.contextmanager
def connect(args: argparse.Namespace) -> Iterator[Any]:
    """A Dask client for ``--workers``/``--scheduler`` (``None`` for a one-process run).

    Called before anything is written: a scheduler that cannot be reached (within
    Dask's ``distributed.comm.timeouts.connect``, 30 s unless configured) is a
    one-line :class:`CommandLineError`.
    """
    if args.workers is None and args.scheduler is None:
        yield None
        return
    try:
        from distributed import Client

        from nvalchemi_ase.distributed import local_cluster
    except ImportError as error:
        raise CommandLineError(
            "--workers and --scheduler need Dask: pip install 'nvalchemi-ase[distributed]'"
        ) from error
    if args.scheduler is not None:
        try:
            client = Client(args.scheduler)
        except (OSError, ValueError) as error:
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise CommandLineError(f"--scheduler {args.scheduler}: cannot connect: {reason}") from error
        with client:
            yield client
        return
    with local_cluster(args.workers) as cluster, Client(cluster) as client:
        yield client


IDLE_TIMEOUT_S = 300.0
"""``--idle-timeout``'s default (and that of runs recorded before the option existed)."""


def _idle_timeout(args: argparse.Namespace) -> float | None:
    """``--idle-timeout`` as ``iter_pipeline`` takes it: None (never) for 0."""
    seconds = getattr(args, "idle_timeout", None)
    if seconds is None:
        return IDLE_TIMEOUT_S
    return None if seconds == 0 else float(seconds)


def _run_distributed(
    args: argparse.Namespace,
    client: Any,
    structures: Sequence[Atoms],
    aside: Sequence[SetAside],
    model_name: str,
    parameters: dict[str, Any],
    settings: Settings,
    progress: Any,
) -> Summary:
    from nvalchemi_ase.distributed import ChunkPlan, DistributedRunError, ModelSpec, iter_pipeline
    from nvalchemi_ase.distributed.outputs import ChunkWriter

    threads = None
    if args.workers is not None:  # the cores shared among the local workers
        threads = max(1, (os.cpu_count() or 1) // args.workers)
    plan = ChunkPlan(
        build=functools.partial(worker_pipeline, settings=settings),
        max_systems=settings.max_systems,
        max_atoms=settings.max_atoms,
        device=settings.device,
        dtype=settings.dtype,
        trajectory_interval=settings.trajectory_interval,
        log_interval=settings.log_interval,
        log_scalars=LOG_SCALARS,
        threads=threads,
    )
    spec = ModelSpec(make_model, {"name": model_name, "parameters": parameters})
    writer = ChunkWriter(settings.output, resume=getattr(args, "resume", False))
    skip = {entry.index for entry in aside} | set(writer.done)
    start = time.perf_counter()
    try:
        run = iter_pipeline(
            client, structures, spec, plan, args.chunk_size, skip=skip, idle_timeout=_idle_timeout(args)
        )
        for result in run:
            writer.write(result)
            if progress is not None:
                progress.finished(len(writer.done))
                progress.update(writer.fused_steps, [])
    except DistributedRunError as error:  # what is done stays recorded in progress.json
        raise DistributedRunError(
            f"{error}. {len(writer.done)} structures done are kept in {writer.progress_path}; "
            f"continue with:  nvalchemi-ase resume {settings.output}",
            error.indices,
        ) from error
    finally:
        if progress is not None:
            progress.close()
    seconds = time.perf_counter() - start
    reasons = {entry.index: entry.reason for entry in aside}
    reasons.update(writer.set_aside)
    done = [atoms for atoms in writer.results() if atoms.info["system_id"] not in reasons]
    _write_final(settings.output / "final.extxyz", done)
    summary = Summary(
        systems=len(structures),
        finished=len(done),
        relaxed=sum(1 for r in done if settings.relax and not r.info.get("unconverged")),
        unconverged=[r.info["system_id"] for r in done if r.info.get("unconverged")],
        set_aside=[{"index": k, "reason": reasons[k]} for k in sorted(reasons)],
        atom_steps_per_second=writer.atom_steps / seconds if seconds > 0 else 0.0,
        seconds=seconds,
        fused_steps=writer.fused_steps,
        outputs=outputs_of(settings.output),
        settings={k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
    )
    (settings.output / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    return summary
