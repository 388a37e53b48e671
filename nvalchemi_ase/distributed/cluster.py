"""A local Dask cluster of worker processes that stays whole when its workers die.

A worker process that dies (killed, out of memory, a crash in native code) is
restarted by its nanny. Dask's ``LocalCluster`` also starts a timer at each
worker removal (``distributed.deploy.lost-worker-timeout``, 15 s) and, when it
fires, closes that worker's nanny for good if no worker of the same name is
registered *at that moment*. A worker that dies twice within 15 s, its second
restart still under way when the first timer fires (a loaded machine: importing
torch takes seconds), thus loses its nanny; after a few such deaths no worker
is left and the tasks wait for ever. :func:`local_cluster` turns that timer off
for the cluster's life: the nannies restart their own workers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from nvalchemi_ase.distributed.client import require_dask

__all__ = ["local_cluster"]

LOST_WORKER_TIMEOUT = "1 day"
"""Longer than any run: a nanny is never closed while it restarts its worker."""


@contextlib.contextmanager
def local_cluster(workers: int, threads_per_worker: int = 1, **options: Any) -> Iterator[Any]:
    """A ``distributed.LocalCluster`` of ``workers`` processes, closed at the end of the block.

    Parameters
    ----------
    workers
        Worker processes (each keeps its model warm).
    threads_per_worker
        Tasks each worker runs at once (one chunk at a time by default).
    options
        More ``LocalCluster`` keywords. Its HTTP server takes a free port
        (``dashboard_address=":0"``) unless given: 8787 may be another cluster's.
    """
    distributed = require_dask()
    import dask

    options.setdefault("dashboard_address", ":0")
    with (
        dask.config.set({"distributed.deploy.lost-worker-timeout": LOST_WORKER_TIMEOUT}),
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True, **options
        ) as cluster,
    ):
        yield cluster
