"""Timing helpers shared by the benchmarks: warm-up, repeats, median, device sync."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def measure(function: Callable[[], object], repeats: int = 5, warmup: int = 1, device: str = "cpu") -> float:
    """Median wall time of ``function`` in seconds (CUDA work is waited for)."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def machine() -> str:
    """A short description of where the numbers came from."""
    import os
    import platform

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
