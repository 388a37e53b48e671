"""Timing helpers shared by the benchmarks: warm-up, repeats, median, device sync."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

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


def time_nve(
    model: Any, systems: list, steps: int, device: str, dtype: torch.dtype, hooks: Sequence[Any] = ()
) -> float:
    """Seconds for ``steps`` NVE steps (dt 2 fs) of the systems in one batch, after 2 warm-up steps."""
    from nvalchemi_ase import Batch
    from nvalchemi_ase.dynamics import NVE

    batch = Batch.from_atoms(systems, device=device, dtype=dtype)
    engine = NVE(model, dt=2.0, hooks=list(hooks))
    engine.run(batch, n_steps=2)  # prime forces, build lists, load kernels
    return measure(lambda: engine.run(batch, n_steps=steps), repeats=1, warmup=0, device=device)


def ase_verlet_per_system_step(systems: list, make_calculator: Callable[[], Any], steps: int) -> float:
    """Seconds per system-step of ASE's ``VelocityVerlet`` (dt 2 fs), one system after another."""
    from ase import units
    from ase.md.verlet import VelocityVerlet

    start = time.perf_counter()
    for atoms in systems:
        atoms = atoms.copy()
        atoms.calc = make_calculator()
        VelocityVerlet(atoms, 2.0 * units.fs).run(steps)
    return (time.perf_counter() - start) / (len(systems) * steps)


def machine() -> str:
    """A short description of where the numbers came from."""
    import os
    import platform

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name()} (CUDA), torch {torch.__version__}"
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
