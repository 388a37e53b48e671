"""Pipelines over a Dask cluster: chunks of structures on workers, results streamed to the client.

Dask is an optional extra (``pip install 'nvalchemi-ase[distributed]'``); this
package imports it only when a run starts. See ``docs/distributed.md``.
"""

from __future__ import annotations

from nvalchemi_ase.distributed.client import (
    DistributedRunError,
    iter_pipeline,
    require_dask,
    run_pipeline,
)
from nvalchemi_ase.distributed.cluster import local_cluster
from nvalchemi_ase.distributed.spec import ChunkPlan, ModelSpec, warm_model
from nvalchemi_ase.distributed.worker import ChunkResult, run_chunk

__all__ = [
    "ChunkPlan",
    "ChunkResult",
    "DistributedRunError",
    "ModelSpec",
    "iter_pipeline",
    "local_cluster",
    "require_dask",
    "run_chunk",
    "run_pipeline",
    "warm_model",
]
