"""The stage loop, its integrators and optimizers, convergence and sinks."""

from __future__ import annotations

from nvalchemi_ase.dynamics.base import BaseDynamics, DynamicsStage
from nvalchemi_ase.dynamics.convergence import ConvergenceHook, Criterion
from nvalchemi_ase.dynamics.fused import FusedStage
from nvalchemi_ase.dynamics.inflight import InflightSampler
from nvalchemi_ase.dynamics.integrators import (
    MTKNPT,
    NVE,
    Andersen,
    Bussi,
    DemoDynamics,
    LangevinBAOAB,
    LangevinBAOABNPT,
    MelchionnaNPT,
    NoseHooverChainNVT,
    NPTBerendsen,
    NVTBerendsen,
    NVTLangevin,
)
from nvalchemi_ase.dynamics.optimizers import BFGS, FIRE, LBFGS, MDMin
from nvalchemi_ase.dynamics.variable_cell import CellFilter
from nvalchemi_ase.sinks import (
    DataSink,
    GPUBuffer,
    HostMemory,
    SinkEmptyError,
    SinkFullError,
    TrajectorySink,
)

__all__ = [
    "BFGS",
    "FIRE",
    "LBFGS",
    "MTKNPT",
    "NVE",
    "Andersen",
    "BaseDynamics",
    "Bussi",
    "CellFilter",
    "ConvergenceHook",
    "Criterion",
    "DataSink",
    "DemoDynamics",
    "DynamicsStage",
    "FusedStage",
    "GPUBuffer",
    "HostMemory",
    "InflightSampler",
    "LangevinBAOAB",
    "LangevinBAOABNPT",
    "MDMin",
    "MelchionnaNPT",
    "NPTBerendsen",
    "NVTBerendsen",
    "NVTLangevin",
    "NoseHooverChainNVT",
    "SinkEmptyError",
    "SinkFullError",
    "TrajectorySink",
]
