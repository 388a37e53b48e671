"""The client's side: cut the input into chunks, hand them to a Dask cluster, stream results back.

Dask's scheduler places chunks on idle workers (relaxations finish at
different times, so a free worker takes the next chunk), retries a chunk whose
task raised, and runs again elsewhere a chunk whose worker died. Results come
back as chunks finish; each structure's result is yielded once, even if a
chunk ran twice. Only a bounded number of chunks is in flight, so a long input
is read as the run goes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ase import Atoms

from nvalchemi_ase.distributed.spec import ChunkPlan, ModelSpec
from nvalchemi_ase.distributed.worker import ChunkResult, run_chunk

__all__ = ["DistributedRunError", "iter_pipeline", "require_dask", "run_pipeline"]

INSTALL_HINT = "pip install 'nvalchemi-ase[distributed]'"


def require_dask() -> Any:
    """The ``distributed`` module, or an ImportError that says what to install."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"distributed runs need Dask: {INSTALL_HINT}") from error
    return distributed


class DistributedRunError(RuntimeError):
    """A distributed run that cannot go on: a chunk failed, or no chunk ran for too long.

    ``indices`` are the input indices of the structures it concerns (the chunk
    that failed, or the chunks that waited); those already yielded are done.
    """

    def __init__(self, message: str, indices: Iterable[int]) -> None:
        super().__init__(message)
        self.indices = sorted(indices)


def iter_pipeline(
    client: Any,
    structures: Iterable[Atoms],
    model: ModelSpec,
    plan: ChunkPlan,
    chunk_size: int = 16,
    skip: Iterable[int] = (),
    max_in_flight: int | None = None,
    retries: int = 2,
    idle_timeout: float | None = 300.0,
) -> Iterator[ChunkResult]:
    """Run ``plan`` over ``structures`` on the cluster behind ``client``; yield chunks as they finish.

    Parameters
    ----------
    client
        A ``distributed.Client``.
    structures
        Any iterable of ``ase.Atoms`` (read lazily).
    model, plan
        How workers build their model (kept warm per worker) and run a chunk.
    chunk_size
        Structures per chunk (per task).
    skip
        Input indices already done (a resumed run): they are not run again.
    max_in_flight
        Most chunks submitted at once (default: 4 per worker, at least 8).
    retries
        Extra tries of a chunk whose task raised. A chunk whose worker died runs
        again elsewhere, up to Dask's ``distributed.scheduler.allowed-failures``
        deaths (3 by default; then the chunk fails).
    idle_timeout
        Seconds the run may go with no chunk running on a worker and none
        finishing (no worker left, or none that takes the work) before it fails;
        ``None``: wait for ever. A chunk that runs long is not idle.

    Yields
    ------
    ChunkResult
        In completion order; together they hold every structure not skipped, once.

    Raises
    ------
    DistributedRunError
        A chunk failed (its task raised past ``retries``, or its workers kept
        dying), or the run was idle for ``idle_timeout``. The chunks still in
        flight are cancelled; what was yielded before is done.
    """
    distributed = require_dask()
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if max_in_flight is None:
        max_in_flight = max(8, 4 * len(client.scheduler_info().get("workers", {})))
    done = set(skip)
    pending = (
        [pair for pair in chunk if pair[0] not in done]
        for chunk in _chunks(enumerate(structures), chunk_size)
    )
    chunks = (chunk for chunk in pending if chunk)
    in_flight: dict[Any, list[int]] = {}  # future -> its chunk's input indices

    def submit(chunk: list[tuple[int, Atoms]]) -> None:
        # The recipes travel inside each task (a few hundred bytes), not scattered: scattered
        # data cannot be recomputed, and a worker that died holding what the scheduler counted
        # as its only copy cancelled every chunk that needed it
        future = client.submit(run_chunk, chunk, model, plan, retries=retries, pure=False)
        in_flight[future] = [index for index, _ in chunk]

    for chunk in itertools.islice(chunks, max_in_flight):
        submit(chunk)
    watchdog = _Watchdog(client, idle_timeout)
    try:
        while in_flight:
            try:
                finished = distributed.wait(
                    list(in_flight), timeout=watchdog.poll_s, return_when="FIRST_COMPLETED"
                ).done
            except TimeoutError:
                watchdog.check(in_flight)
                continue
            watchdog.progressed()
            for future in finished:
                result = _result(future, in_flight.pop(future))
                fresh = [k for k in result.indices if k not in done]
                following = next(chunks, None)
                if following is not None:
                    submit(following)
                if fresh:
                    done.update(result.indices)
                    yield result
    finally:
        if in_flight:  # failed or abandoned: nothing keeps the cluster busy
            client.cancel(list(in_flight))


class _Watchdog:
    """Fails a run in which, for ``idle_timeout`` seconds, no chunk ran and none finished."""

    def __init__(self, client: Any, idle_timeout: float | None) -> None:
        self.client = client
        self.idle_timeout = idle_timeout
        self.poll_s = 1.0 if idle_timeout is None else min(1.0, idle_timeout / 4)
        self.since = time.monotonic()

    def progressed(self) -> None:
        self.since = time.monotonic()

    def check(self, in_flight: dict[Any, list[int]]) -> None:
        if self.idle_timeout is None:
            return
        processing = {key for keys in self.client.processing().values() for key in keys}
        if any(future.key in processing for future in in_flight):
            self.progressed()  # a chunk is on a worker: running, however long it takes
            return
        idle = time.monotonic() - self.since
        if idle < self.idle_timeout:
            return
        workers = len(self.client.scheduler_info().get("workers", {}))
        why = (
            "no worker is left on the cluster" if workers == 0 else f"none of its {workers} workers took one"
        )
        waiting = [index for indices in in_flight.values() for index in indices]
        raise DistributedRunError(
            f"no chunk ran for {idle:.0f} s ({why}); waiting: structures {_ranges(waiting)}", waiting
        )


def _result(future: Any, indices: list[int]) -> ChunkResult:
    """The chunk's result, or a :class:`DistributedRunError` that names its structures."""
    try:
        result: ChunkResult = future.result()
    except (Exception, asyncio.CancelledError) as error:
        if type(error).__name__ == "KilledWorker":
            reason = "every worker that ran it died (distributed.scheduler.allowed-failures)"
        else:
            reason = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
        raise DistributedRunError(
            f"the chunk of structures {_ranges(indices)} failed: {reason}", indices
        ) from error
    finally:
        future.release()
    return result


def _ranges(indices: Iterable[int]) -> str:
    """``0-3, 8, 10-11``: sorted input indices, runs joined."""
    runs: list[list[int]] = []
    for index in sorted(indices):
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def run_pipeline(
    client: Any,
    structures: Iterable[Atoms],
    model: ModelSpec,
    plan: ChunkPlan,
    chunk_size: int = 16,
    on_chunk: Callable[[ChunkResult], None] | None = None,
    **options: Any,
) -> list[Atoms]:
    """:func:`iter_pipeline` to the end; the final structures in input order.

    ``on_chunk(result)`` is called on the client as each chunk arrives (e.g. to
    write its outputs). ``options`` go to :func:`iter_pipeline`.
    """
    final: dict[int, Atoms] = {}
    for result in iter_pipeline(client, structures, model, plan, chunk_size, **options):
        if on_chunk is not None:
            on_chunk(result)
        for index, atoms in zip(result.indices, result.final, strict=True):
            final[index] = atoms
    return [final[k] for k in sorted(final)]


def _chunks(pairs: Iterable[tuple[int, Atoms]], size: int) -> Iterator[list[tuple[int, Atoms]]]:
    iterator = iter(pairs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
