"""``IsotropicMTKNPT`` and ``MTKNPT``: ASE's MTK classes (``ase.md.nose_hoover_chain``), batched.

Imported from :mod:`nvalchemi_ase.md.nose_hoover_chain`, ASE's module path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from ase import Atoms

from nvalchemi_ase._lookalike.variable_cell import VariableCell
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import MTKNPT as MTKEngine
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.units import internal_to_fs

__all__ = ["MTKNPT", "IsotropicMTKNPT"]


class MTKNPT(VariableCell, MolecularDynamics):
    """Isothermal-isobaric MD with a fully flexible cell (Martyna–Tobias–Klein), ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Target temperature in K (one per system allowed for a list).
    pressure_au
        External pressure in eV/Å³ (one per system allowed).
    tdamp, pdamp
        Thermostat and barostat times in ASE time units (one per system allowed).
    tchain, pchain, tloop, ploop
        Chain lengths and sub-steps of the thermostat and the barostat.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    As ASE's class, any constraint raises NotImplementedError. The ``Atoms``'
    cells are written whenever their positions are; cells edited on the host
    between steps are not sent to the device.
    """

    isotropic: ClassVar[bool] = False

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature_K: Any,
        pressure_au: Any,
        tdamp: Any,
        pdamp: Any,
        tchain: int = 3,
        pchain: int = 3,
        tloop: int = 1,
        ploop: int = 1,
        **kwargs: Any,
    ) -> None:
        self._temperature_K, self._pressure_au = temperature_K, pressure_au
        self.tdamp, self.pdamp = tdamp, pdamp
        self.tchain, self.pchain, self.tloop, self.ploop = tchain, pchain, tloop, ploop
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> MTKEngine:
        for index, atoms in enumerate(self.systems.atoms):
            if atoms.constraints:
                raise NotImplementedError(
                    f"atoms[{index}] has constraints: current implementation does not support constraints"
                )
        return MTKEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(self._temperature_K, "temperature_K"),
            pressure=self._per_system_value(self._pressure_au, "pressure_au"),
            tdamp=self._per_system_value(internal_to_fs(np.asarray(self.tdamp)), "tdamp"),
            pdamp=self._per_system_value(internal_to_fs(np.asarray(self.pdamp)), "pdamp"),
            tchain=self.tchain,
            pchain=self.pchain,
            tloop=self.tloop,
            ploop=self.ploop,
            isotropic=self.isotropic,
        )

    def get_conserved_energy(self) -> float | np.ndarray:
        """ASE's conserved quantity (eV; an array for a list), from the device."""
        assert isinstance(self.engine, MTKEngine)
        self._prime()
        values = to_host([self.engine.conserved_energy(self.systems.batch)])[0].astype(float)
        return float(values[0]) if len(values) == 1 else values


class IsotropicMTKNPT(MTKNPT):
    """Isothermal-isobaric MD with isotropic volume fluctuations (MTK), ASE's signature and numbers.

    Parameters and notes as :class:`MTKNPT`; only the volume changes (the
    cell keeps its shape).
    """

    isotropic: ClassVar[bool] = True
