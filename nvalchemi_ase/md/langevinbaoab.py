"""``LangevinBAOAB``: ``ase.md.langevinbaoab.LangevinBAOAB`` (constant N, V, T) over the batched engine."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms, units

from nvalchemi_ase._lookalike.constraints import SUPPORTED, no_fixcom_mixture, only_constraints
from nvalchemi_ase._lookalike.random import ase_noise
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import NVE, BaseDynamics, LangevinBAOABNPT
from nvalchemi_ase.dynamics import LangevinBAOAB as BAOABEngine
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.ops.baoab import external_stress_tensor
from nvalchemi_ase.units import internal_to_fs

__all__ = ["LangevinBAOAB"]


def _generator(rng: Any) -> Any:
    """ASE's rule: a numpy Generator as is, anything else seeds one (torch generators pass through)."""
    if rng is None or isinstance(rng, np.random.Generator | torch.Generator):
        return rng
    return np.random.default_rng(rng)


class LangevinBAOAB(MolecularDynamics):
    """Langevin dynamics in the BAOAB splitting, ASE's signature and numbers (NVE/NVT, NPH/NPT).

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Temperature in K (one per system allowed for a list); ``None``: no
        thermostat (velocity Verlet, as ASE's BAOAB without the O step; NPH
        with ``externalstress``).
    externalstress
        Target stress in ASE units (the same for every system), enabling a
        variable cell: a scalar (required when ``hydrostatic``), 3 values
        (diagonal), 6 (Voigt) or a 3×3 matrix.
    hydrostatic
        Scale the cell (volume only) rather than strain it freely.
    T_tau
        Velocity relaxation time in ASE time units (``None``: 50 ``timestep``,
        with ASE's warning).
    P_tau, P_mass, P_mass_factor, disable_cell_langevin
        ASE's barostat options (``P_tau`` default 20 ``T_tau``, or 1000
        ``timestep``; ``P_mass`` default ASE's heuristic, per system).
    rng
        A ``numpy.random.Generator``, or a seed for one (ASE's rule; ``None``:
        a random seed, with ASE's warning); a list gives one per system; a
        ``torch.Generator`` draws on the device.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    ``FixAtoms`` runs as in ASE at constant cell (the fixed atoms stay put with
    zero momenta; ASE's noise draws still cover them), and so do
    ``FixCartesian``, ``FixCom``, ``FixedPlane`` and ``Hookean`` (ASE projects
    the velocities after each kick and noise; here the positions and the
    final velocities are projected, which gives the same numbers). Other
    constraints (``FixBondLength(s)``: ASE lets the bonds drift), ``FixCom``
    next to anything but ``Hookean`` (ASE's ``FixCom`` moves atoms the other
    constraint holds), and
    ``FixAtoms`` with a variable cell (ASE's class scales the fixed atoms with
    the cell), raise NotImplementedError. With a variable cell, the
    ``Atoms``' cells are written whenever their positions are; cells edited on
    the host between steps are not sent to the device.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        *,
        temperature_K: Any = None,
        externalstress: Any = None,
        hydrostatic: bool = False,
        T_tau: Any = None,
        P_tau: Any = None,
        P_mass: Any = None,
        P_mass_factor: float = 1.0,
        disable_cell_langevin: bool = False,
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        self.hydrostatic = hydrostatic
        self.externalstress: Any = None
        if externalstress is not None:
            stress = external_stress_tensor(externalstress, hydrostatic).numpy()
            self.externalstress = stress[0, 0] if hydrostatic else stress
        self.disable_cell_langevin = disable_cell_langevin
        self.temperature_K = temperature_K
        self.rng = [_generator(r) for r in rng] if isinstance(rng, list | tuple) else _generator(rng)
        if temperature_K is not None and rng is None:
            seed = secrets.randbits(128)
            self.rng = np.random.default_rng(seed)
            warnings.warn(
                f"No rng provided, generated one with seed={seed} from secrets.randbits", stacklevel=2
            )
        if temperature_K is not None and T_tau is None:
            T_tau = 50.0 * timestep
            warnings.warn(
                f"Got `temperature_K` but missing `T_tau`, defaulting to 50 * `timstep` = {T_tau}",
                stacklevel=2,
            )
        if T_tau is not None and np.any(np.asarray(T_tau) <= 0):
            raise ValueError(f"Invalid T_tau {T_tau} <= 0")
        self.T_tau = T_tau
        if self.externalstress is not None:
            self._set_barostat(atoms, timestep, P_tau, P_mass, P_mass_factor)
        super().__init__(atoms, timestep, **kwargs)
        if self.externalstress is not None:
            self.Ndof = self._one_or_many(self.systems.degrees_of_freedom())

    def _set_barostat(self, atoms: Any, timestep: float, P_tau: Any, P_mass: Any, factor: float) -> None:
        """ASE's ``P_tau`` default, check and warnings, and ``barostat_mass`` (heuristic per system)."""
        if P_tau is None:
            if self.T_tau is not None:
                P_tau = self._one_or_many(20.0 * np.asarray(self.T_tau))
                warnings.warn(
                    "Got `externalstress` but missing `P_tau`, got `T_tau`, "
                    f"defaulting to 20 * `T_tau` = {P_tau}",
                    stacklevel=3,
                )
            else:
                P_tau = 1000.0 * timestep
                warnings.warn(
                    "Got `externalstress` but missing `P_tau` and `T_tau`, "
                    f"defaulting to 1000 * `timestep` = {P_tau}",
                    stacklevel=3,
                )
        self.P_tau = P_tau
        if np.any(np.asarray(P_tau) <= 0):
            raise ValueError(f"Invalid P_tau {P_tau} <= 0")
        self.p_eps_initial = 0.0
        if P_mass is None:
            counts = np.array([len(a) for a in ([atoms] if isinstance(atoms, Atoms) else atoms)], dtype=float)
            mass = (((np.asarray(P_tau) / 4.0) / (1.66 * units.fs)) * (counts ** (1.0 / 6.0))) ** 2
            mass = self._one_or_many(mass)
            warnings.warn(f"Using heuristic P_mass {mass} from P_tau {P_tau}", stacklevel=3)
            P_mass = mass * factor
        self.barostat_mass = P_mass

    @staticmethod
    def _one_or_many(values: Any) -> Any:
        """A float for a single value (one system), else the array."""
        values = np.asarray(values, dtype=float)
        return float(values.flat[0]) if values.size == 1 else values

    @property
    def p_eps(self) -> Any:
        """ASE's ``p_eps``: a float (hydrostatic) or 3×3 per system, stacked ``[B, ...]`` for a list."""
        p_eps = getattr(self.systems.batch, "baoab_p_eps", None)
        if p_eps is None:
            return 0.0
        value = to_host([p_eps])[0]
        value = value[:, 0, 0] if self.hydrostatic else value
        return self._one_or_many(value) if self.hydrostatic else (value[0] if len(value) == 1 else value)

    def _make_engine(self, model: Any) -> BaseDynamics:
        only_constraints(
            self.systems.atoms,
            type(self).__name__,
            SUPPORTED,
            "ASE moves the positions without applying other constraints to them: bonds drift",
        )
        no_fixcom_mixture(self.systems.atoms, type(self).__name__)
        if self.externalstress is not None:
            self._forbid_constraints(
                "with externalstress, ASE's LangevinBAOAB scales FixAtoms atoms with the cell "
                "(they move); not reproduced here"
            )
            return self._make_barostat(model)
        if self.temperature_K is None:
            return NVE(model, dt=internal_to_fs(self.dt))
        return BAOABEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            T_tau=self._per_system_value(internal_to_fs(np.asarray(self.T_tau)), "T_tau"),
            noise=ase_noise(self.rng, len(self.systems), self.systems.device),
        )

    def _make_barostat(self, model: Any) -> BaseDynamics:
        thermostatted = self.temperature_K is not None
        noise = ase_noise(self.rng, len(self.systems), self.systems.device) if thermostatted else None
        return LangevinBAOABNPT(
            model,
            internal_to_fs(self.dt),
            torch.as_tensor(self.externalstress),
            hydrostatic=self.hydrostatic,
            temperature=self._per_system_value(self.temperature_K, "temperature_K")
            if thermostatted
            else None,
            T_tau=self._per_system_value(internal_to_fs(np.asarray(self.T_tau)), "T_tau")
            if thermostatted
            else None,
            P_tau=self._per_system_value(internal_to_fs(np.asarray(self.P_tau)), "P_tau"),
            P_mass=torch.as_tensor(np.asarray(self.barostat_mass, dtype=float)),
            disable_cell_langevin=self.disable_cell_langevin,
            noise=noise,
        )

    def _report(
        self, state: bool, log: bool, observe: bool, extras: bool = True, everyone: bool = False
    ) -> None:
        """Variable cell: the device cells go to the ``Atoms`` before their positions (and caches)."""
        if state and self.externalstress is not None:
            cells = to_host([self.systems.batch.cell])[0]
            for b, atoms in enumerate(self.systems.atoms):
                atoms.set_cell(cells[b], scale_atoms=False, apply_constraint=False)
        super()._report(state, log, observe, extras, everyone)
