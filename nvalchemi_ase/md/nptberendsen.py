"""``NPTBerendsen`` and ``Inhomogeneous_NPTBerendsen``: ``ase.md.nptberendsen`` over the batched engine."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from ase import Atoms, units

from nvalchemi_ase._lookalike.variable_cell import VariableCell
from nvalchemi_ase.dynamics import NPTBerendsen as NPTBerendsenEngine
from nvalchemi_ase.dynamics.hooks import FreezeAtomsHook
from nvalchemi_ase.md.nvtberendsen import NVTBerendsen
from nvalchemi_ase.units import internal_to_fs

__all__ = ["Inhomogeneous_NPTBerendsen", "NPTBerendsen"]


def _pressure_au(pressure: Any, pressure_au: Any) -> Any:
    """ASE's rule: exactly one of ``pressure`` (bar, deprecated) and ``pressure_au`` (eV/Å³)."""
    if (pressure is not None) + (pressure_au is not None) != 1:
        raise TypeError("Exactly one of the parameters 'pressure', and 'pressure_au' must be given")
    if pressure is not None:
        warnings.warn(
            FutureWarning(
                "The 'pressure' parameter is deprecated, please specify the pressure in atomic units "
                "(eV/Å^3) using the 'pressure_au' parameter."
            ),
            stacklevel=3,
        )
        return np.asarray(pressure, dtype=float) * (1e5 * units.Pascal)
    return pressure_au


class NPTBerendsen(VariableCell, NVTBerendsen):
    """Berendsen (constant N, P, T) MD with isotropic cell scaling, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature, temperature_K
        Target temperature in K (one per system allowed for a list).
    pressure_au
        Target pressure in eV/Å³ (one per system allowed); ``pressure`` (bar) is ASE's deprecated form.
    taut, taup
        Temperature and pressure coupling times in ASE time units (defaults 0.5 ps and 1 ps).
    compressibility_au
        Compressibility in Å³/eV (required); ``compressibility`` (1/bar) is ASE's deprecated form.
    fixcm
        Remove the mean momentum in every step (ASE's default True).
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    Each step computes the forces twice, as ASE's does (after the cell
    scaling, and after the drift). ``FixAtoms`` runs as in ASE: the fixed
    atoms move with the cell, not otherwise. The ``Atoms``' cells are written
    whenever their positions are; cells edited on the host between steps are
    not sent to the device.
    """

    inhomogeneous: ClassVar[bool] = False
    mask: Any = (1, 1, 1)

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature: Any = None,
        *,
        temperature_K: Any = None,
        pressure: Any = None,
        pressure_au: Any = None,
        taut: Any = 0.5e3 * units.fs,
        taup: Any = 1e3 * units.fs,
        compressibility: Any = None,
        compressibility_au: Any = None,
        fixcm: bool = True,
        **kwargs: Any,
    ) -> None:
        self.taup = taup
        self.pressure = _pressure_au(pressure, pressure_au)
        if compressibility is not None and compressibility_au is not None:
            raise TypeError("Do not give both 'compressibility' and 'compressibility_au'")
        if compressibility is not None:
            warnings.warn(FutureWarning("Specify the compressibility in atomic units."), stacklevel=2)
            compressibility_au = np.asarray(compressibility, dtype=float) / (1e5 * units.Pascal)
        if compressibility_au is None:
            raise TypeError("Missing 'compressibility_au' argument.")
        self.compressibility = compressibility_au
        super().__init__(atoms, timestep, temperature, taut, fixcm, temperature_K=temperature_K, **kwargs)

    def _make_engine(self, model: Any) -> NPTBerendsenEngine:
        engine = NPTBerendsenEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(self.temperature, "temperature"),
            taut=self._per_system_value(internal_to_fs(np.asarray(self.taut)), "taut"),
            pressure=self._per_system_value(self.pressure, "pressure_au"),
            taup=self._per_system_value(internal_to_fs(np.asarray(self.taup)), "taup"),
            compressibility=self._per_system_value(self.compressibility, "compressibility_au"),
            fixcm=bool(self.fix_com),
            inhomogeneous=self.inhomogeneous,
            mask=tuple(float(m) for m in self.mask),
        )
        engine.fixed_degrees_of_freedom = self.systems.degrees_of_freedom()  # ASE's count
        return engine

    def _install_hooks(self) -> None:
        super()._install_hooks()
        for hook in self.engine.hooks:
            if isinstance(hook, FreezeAtomsHook):
                hook.follow_cell = True  # ASE scales FixAtoms atoms with the cell

    # ------------------------------------------------------------------ ASE's setters and getters
    @property
    def _npt(self) -> NPTBerendsenEngine:
        assert isinstance(self.engine, NPTBerendsenEngine)
        return self.engine

    def set_taup(self, taup: Any) -> None:
        self.taup = taup
        self._npt.taup = self._per_system_value(internal_to_fs(np.asarray(taup)), "taup")

    def get_taup(self) -> Any:
        return self.taup

    def set_pressure(self, pressure: Any = None, *, pressure_au: Any = None) -> None:
        self.pressure = _pressure_au(pressure, pressure_au)
        self._npt.pressure = self._per_system_value(self.pressure, "pressure_au")

    def get_pressure(self) -> Any:
        return self.pressure

    def set_compressibility(self, *, compressibility_au: Any) -> None:
        self.compressibility = compressibility_au
        self._npt.compressibility = self._per_system_value(compressibility_au, "compressibility_au")

    def get_compressibility(self) -> Any:
        return self.compressibility


class Inhomogeneous_NPTBerendsen(NPTBerendsen):
    """Berendsen NPT scaling each cell vector on its own (angles kept), ASE's signature and numbers.

    Parameters and notes as :class:`NPTBerendsen`, plus ``mask``: which cell
    vectors take part (3 of 0/1, default all); vectors along non-periodic
    directions never do.
    """

    inhomogeneous: ClassVar[bool] = True

    def __init__(self, *args: Any, mask: Any = (1, 1, 1), **kwargs: Any) -> None:
        self.mask = mask
        super().__init__(*args, **kwargs)
