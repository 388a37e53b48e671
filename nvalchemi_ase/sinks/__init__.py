"""Sinks: where snapshots of systems go during a run.

:class:`HostMemory` keeps CPU copies, :class:`GPUBuffer` copies into storage
preallocated on the device, :class:`TrajectorySink` writes one ASE trajectory
file per system. All share :class:`DataSink`'s rules: a write that does not fit
raises :class:`SinkFullError` before anything is stored, and reading an empty
sink raises :class:`SinkEmptyError`.
"""

from __future__ import annotations

from nvalchemi_ase.sinks.base import DataSink, SinkEmptyError, SinkFullError
from nvalchemi_ase.sinks.gpu_buffer import GPUBuffer
from nvalchemi_ase.sinks.host_memory import HostMemory
from nvalchemi_ase.sinks.trajectory import TrajectorySink

__all__ = ["DataSink", "GPUBuffer", "HostMemory", "SinkEmptyError", "SinkFullError", "TrajectorySink"]
