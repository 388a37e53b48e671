"""Shared fixtures; the ``gpu`` marker skips without CUDA."""

from __future__ import annotations

import os

# numpy's OpenBLAS threads fight torch's for the two cores of CI machines: small
# eigh calls in the ASE references slowed from ~2 ms to ~150 ms. One thread for it.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def cpu() -> torch.device:
    return torch.device("cpu")
