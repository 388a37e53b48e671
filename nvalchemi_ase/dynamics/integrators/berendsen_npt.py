"""Berendsen NPT in ASE's scheme (``ase.md.nptberendsen``, see :mod:`nvalchemi_ase.ops.berendsen`), batched.

One step: the NVT Berendsen velocity scaling, the cell (and the atoms with
it) scaled towards the target pressure, new forces for the scaled positions
(ASE computes them too: two model calls a step), then the velocity-Verlet
step of :class:`~nvalchemi_ase.dynamics.NVTBerendsen`. Each system has its
own pressure, coupling times and compressibility. Deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics.integrators._thermostat import ParameterValue, PerSystemParameter
from nvalchemi_ase.dynamics.integrators._variable_cell import ensure_stress, recompute, require_stress
from nvalchemi_ase.dynamics.integrators.berendsen import NVTBerendsen
from nvalchemi_ase.models.base import Model
from nvalchemi_ase.ops import berendsen
from nvalchemi_ase.ops import cell as cell_ops
from nvalchemi_ase.units import fs


class NPTBerendsen(NVTBerendsen):
    """Berendsen weak coupling of temperature and pressure, ``ase.md.nptberendsen``'s algorithms.

    Parameters
    ----------
    model
        Batched model returning forces and stress.
    dt
        Time step in fs.
    temperature, taut, fixcm
        As :class:`~nvalchemi_ase.dynamics.NVTBerendsen` (K, fs).
    pressure
        Target pressure in eV/Å³: a float or one per system.
    taup
        Pressure coupling time τ_P in fs: a float or one per system.
    compressibility
        β in Å³/eV: a float or one per system.
    inhomogeneous
        Scale each cell vector on its own (``Inhomogeneous_NPTBerendsen``:
        lengths change, angles are kept) instead of the whole cell.
    mask
        With ``inhomogeneous``: which cell vectors are coupled (3 of 0/1);
        vectors along non-periodic directions never are.
    n_steps, hooks, convergence_hook, **options
        As :class:`~nvalchemi_ase.dynamics.BaseDynamics`.

    Notes
    -----
    The new forces after the cell scaling are computed inside
    :meth:`pre_update`, with this engine's ``BEFORE_COMPUTE`` and
    ``AFTER_COMPUTE`` hooks firing around them as around every compute.
    """

    pressure = PerSystemParameter("eV/Å³", signed=True)
    taup = PerSystemParameter("fs", positive=True)
    compressibility = PerSystemParameter("Å³/eV", positive=True)

    def __init__(
        self,
        model: Model,
        dt: float,
        temperature: ParameterValue,
        taut: ParameterValue,
        pressure: ParameterValue,
        taup: ParameterValue,
        compressibility: ParameterValue,
        fixcm: bool = True,
        inhomogeneous: bool = False,
        mask: Sequence[float] = (1, 1, 1),
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        **options: Any,
    ) -> None:
        require_stress(model)
        super().__init__(model, dt, temperature, taut, fixcm, n_steps, hooks, convergence_hook, **options)
        self.request_property("stress")
        self.pressure = pressure
        self.taup = taup
        self.compressibility = compressibility
        self.inhomogeneous = bool(inhomogeneous)
        self.mask = torch.as_tensor(mask, dtype=torch.float64)
        if self.mask.shape != (3,):
            raise ValueError(f"mask must hold 3 values (one per cell vector), got {mask!r}")
        self.state_fields = (*self.state_fields, "cell")

    def prepare(self, batch: Batch) -> None:
        super().prepare(batch)
        self._pressure = self.per_system("pressure", batch)
        self._taup = self.per_system("taup", batch, fs)
        self._compressibility = self.per_system("compressibility", batch)
        mask = self.mask.to(dtype=batch.dtype, device=batch.device)
        self._coupled = batch.pbc.to(batch.dtype) * mask

    def scale_cell(self, batch: Batch) -> None:
        """Scale the cells and positions towards the target pressure (stress with the ideal-gas term)."""
        self.refresh(batch)
        index, B = batch.batch_idx, batch.num_graphs
        kinetic = cell_ops.kinetic_tensor(batch.velocities, batch.masses, index, B)
        stress = cell_ops.stress_with_ideal_gas(batch.stress, kinetic, cell_ops.volume(batch.cell))
        dt = self.dt_internal
        if self.inhomogeneous:
            scales = berendsen.axis_scales(
                stress, self._pressure, dt, self._taup, self._compressibility, self._coupled
            )
            cell = batch.cell * scales.unsqueeze(2)
        else:
            scale = berendsen.cell_scale(stress, self._pressure, dt, self._taup, self._compressibility)
            cell = scale.view(-1, 1, 1) * batch.cell
        batch.positions = cell_ops.scale_positions(batch.positions, batch.cell, cell, index)
        batch.cell = cell

    def pre_update(self, batch: Batch) -> None:
        ensure_stress(self, batch)
        self.scale_velocities(batch)
        self.scale_cell(batch)
        recompute(self, batch)  # forces for the scaled positions, as ASE's second force call
        self.kick_and_drift(batch)
