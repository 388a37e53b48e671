"""The client's side: cut the input into chunks, hand them to a Dask cluster, stream results back.

Dask's scheduler places chunks on idle workers (relaxations finish at
different times, so a free worker takes the next chunk), retries a chunk whose
task raised, and runs again elsewhere a chunk whose worker died. Results come
back as chunks finish; each structure's result is yielded once, even if a
chunk ran twice. Only a bounded number of chunks is in flight, so a long input
is read as the run goes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ase import Atoms

from nvalchemi_ase.distributed.spec import ChunkPlan, ModelSpec
from nvalchemi_ase.distributed.worker import ChunkResult, run_chunk

__all__ = ["iter_pipeline", "require_dask", "run_pipeline"]

INSTALL_HINT = "pip install 'nvalchemi-ase[distributed]'"


def require_dask() -> Any:
    """The ``distributed`` module, or an ImportError that says what to install."""
    try:
        import distributed
    except ImportError as error:
        raise ImportError(f"distributed runs need Dask: {INSTALL_HINT}") from error
    return distributed


def iter_pipeline(
    client: Any,
    structures: Iterable[Atoms],
    model: ModelSpec,
    plan: ChunkPlan,
    chunk_size: int = 16,
    skip: Iterable[int] = (),
    max_in_flight: int | None = None,
    retries: int = 2,
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
        Extra tries of a chunk whose task raised (a dead worker is handled by Dask itself).

    Yields
    ------
    ChunkResult
        In completion order; together they hold every structure not skipped, once.
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

    def submit(chunk: list[tuple[int, Atoms]]) -> Any:
        # The recipes travel inside each task (a few hundred bytes), not scattered: scattered
        # data cannot be recomputed, and a worker that died holding what the scheduler counted
        # as its only copy cancelled every chunk that needed it
        return client.submit(run_chunk, chunk, model, plan, retries=retries, pure=False)

    running = distributed.as_completed([submit(c) for c in itertools.islice(chunks, max_in_flight)])
    for future in running:
        result: ChunkResult = future.result()
        future.release()
        fresh = [k for k in result.indices if k not in done]
        if fresh:
            done.update(result.indices)
            yield result
        following = next(chunks, None)
        if following is not None:
            running.add(submit(following))


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
