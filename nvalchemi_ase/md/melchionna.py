"""``MelchionnaNPT``: ``ase.md.melchionna.MelchionnaNPT`` over the batched engine."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from ase import Atoms, units

from nvalchemi_ase._lookalike.variable_cell import VariableCell
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import MelchionnaNPT as MelchionnaEngine
from nvalchemi_ase.dynamics.integrators.melchionna import strain_mask, stress_tensor
from nvalchemi_ase.md.md import MolecularDynamics, process_temperature
from nvalchemi_ase.units import ev_to_kelvin, internal_to_fs, kelvin_to_ev

__all__ = ["MelchionnaNPT"]


class MelchionnaNPT(VariableCell, MolecularDynamics):
    """Constant-stress, constant-temperature MD of Melchionna, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature
        Temperature in eV (ASE's deprecated form, with its FutureWarning).
    externalstress
        eV/Å³, positive in tension: a scalar pressure, a 6-vector (Voigt) or a
        symmetric 3×3, the same for every system; for a list, ``[B]``
        pressures (B ≠ 6), ``[B, 6]`` or ``[B, 3, 3]`` give one per system.
    ttime
        Thermostat time in ASE time units (one per system allowed), or ``None`` (no thermostat).
    pfactor
        Barostat constant τ_P² B in eV/Å³ × ASE time² (one per system allowed), or ``None`` (no barostat).
    temperature_K
        Temperature in K (one per system allowed).
    mask
        Which strain components may change: ``None``, 3 axes or a symmetric 3×3.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    As in ASE, cells must be upper or lower triangular, the centre-of-mass
    momentum is removed on construction, and a run after the positions were
    edited raises NotImplementedError. Constraints raise NotImplementedError
    (ASE's scaled positions run past them). Call :meth:`set_fraction_traceless`
    before the first run.
    """

    classname = "MelchionnaNPT"

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature: float | None = None,
        externalstress: Any = None,
        ttime: Any = None,
        pfactor: Any = None,
        *,
        temperature_K: Any = None,
        mask: Any = None,
        **kwargs: Any,
    ) -> None:
        if externalstress is None and pfactor is not None:
            raise TypeError("Missing 'externalstress' argument.")
        systems = [atoms] if isinstance(atoms, Atoms) else list(atoms)
        for system in systems:
            if isinstance(system, Atoms):
                self._zero_center_of_mass_momentum(system)
        if isinstance(temperature_K, list | tuple):
            temperature_K = np.asarray(temperature_K, dtype=float)
        self.temperature = kelvin_to_ev(process_temperature(temperature, temperature_K, "eV"))
        self.externalstress = None if externalstress is None else stress_tensor(externalstress).numpy()
        self.mask = strain_mask(mask).numpy().astype(bool)
        self.ttime = ttime
        self.pfactor_given = pfactor
        self.frac_traceless = 1.0
        super().__init__(atoms, timestep, **kwargs)

    def _zero_center_of_mass_momentum(self, atoms: Atoms) -> None:
        """ASE's ``zero_center_of_mass_momentum(verbose=1)`` on one system (warning on stderr)."""
        momenta = atoms.get_momenta()
        total = momenta.sum(0)
        if np.sqrt(np.sum(total * total)) > 1e-4:
            sys.stderr.write(
                f"WARNING: {self.classname}: Setting the center-of-mass momentum to zero "
                "(was %.6g %.6g %.6g)\n" % tuple(total)
            )
            sys.stderr.flush()
        atoms.set_momenta(momenta - total / len(atoms))

    def _make_engine(self, model: Any) -> MelchionnaEngine:
        self._forbid_constraints(
            f"ASE's {self.classname} moves scaled positions past constraints; not reproduced here"
        )
        seconds = lambda value: None if value is None else internal_to_fs(np.asarray(value))  # noqa: E731
        ttime, pfactor = seconds(self.ttime), seconds(self.pfactor_given)
        return MelchionnaEngine(
            model,
            internal_to_fs(self.dt),
            temperature=self._per_system_value(ev_to_kelvin(np.asarray(self.temperature)), "temperature_K"),
            externalstress=0.0 if self.externalstress is None else self.externalstress,
            ttime=None if ttime is None else self._per_system_value(ttime, "ttime"),
            pfactor=None if pfactor is None else self._per_system_value(pfactor / units.fs, "pfactor"),
            mask=self.mask,
        )

    def set_fraction_traceless(self, fracTraceless: float) -> None:
        """Keep this share of the traceless part of the force on η (0: the shape may not change)."""
        self.frac_traceless = fracTraceless
        self._melchionna.fraction_traceless = float(fracTraceless)

    def get_strain_rate(self) -> np.ndarray:
        """η, triangular ``3×3`` (``[B, 3, 3]`` for a list)."""
        value = (
            to_host([self.systems.batch.npt_eta])[0] if self.nsteps else np.zeros((len(self.systems), 3, 3))
        )
        return value[0] if len(value) == 1 else value

    @property
    def _melchionna(self) -> MelchionnaEngine:
        assert isinstance(self.engine, MelchionnaEngine)
        return self.engine

    def _loop(self, steps: int, public: bool) -> Iterator[bool]:
        if self.nsteps:
            for index, atoms in enumerate(self.systems.atoms):
                if not np.array_equal(atoms.positions, self.systems._positions[index]):
                    raise NotImplementedError(
                        f"atoms[{index}]: You have modified the atoms since the last timestep."
                    )
        yield from super()._loop(steps, public)
