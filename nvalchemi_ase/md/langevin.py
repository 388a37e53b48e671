"""``Langevin``: ``ase.md.langevin.Langevin`` over the batched NVTLangevin engine.

Same scheme (Vanden-Eijnden & Ciccotti 2006, Eq. 23; Eq. 39 with RATTLE
constraints) and, given the same ``rng``, the same numbers: every step draws
ξ then η with ``rng.standard_normal(size=(N, 3))``, as ASE does.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms, units

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVTLangevin
from nvalchemi_ase.lookalike.random import check_rng, draw_per_system
from nvalchemi_ase.md.md import MolecularDynamics, process_temperature

__all__ = ["Langevin"]

_FIXCM_WARNING = (
    "The implementation of `fixcm=True` in `Langevin` does not "
    "strictly sample the correct NVT distributions. "
    "The deviations are typically small for large systems but can "
    "be more pronounced for small systems. "
    "Use `fixcm=False` together with `ase.constraints.FixCom`. "
    "`fixcm` is deprecated since ASE 3.28.0 and will be removed in "
    "a future release."
)


class _RngLangevin(NVTLangevin):
    """NVTLangevin whose ξ, η come from an ASE-style ``rng`` (or a torch generator on the device)."""

    def __init__(self, *args: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = rng

    def draw_noise(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        rng = self.rng
        if isinstance(rng, torch.Generator):
            shape = (batch.num_nodes, 3)
            xi = torch.randn(shape, generator=rng, dtype=batch.dtype, device=batch.device)
            return xi, torch.randn(shape, generator=rng, dtype=batch.dtype, device=batch.device)
        xi, eta = draw_per_system(rng, batch, _xi_eta)
        return xi, eta


def _xi_eta(rng: Any, count: int) -> tuple[np.ndarray, np.ndarray]:
    """One system's draws, as ASE's ``Langevin.step``: ξ, then η."""
    return rng.standard_normal(size=(count, 3)), rng.standard_normal(size=(count, 3))


class Langevin(MolecularDynamics):
    """Langevin (constant N, V, T) molecular dynamics, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature
        Deprecated: the temperature in **eV** (ASE's legacy slot; gives ASE's
        FutureWarning). Use ``temperature_K``.
    friction
        Friction in 1/(ASE time), e.g. ``0.01 / ase.units.fs``. Required.
    fixcm
        ASE's deprecated centre-of-mass fixing of the noise (default True,
        with ASE's FutureWarning); pass ``fixcm=False`` and use ``FixCom``.
    temperature_K
        Temperature in K.
    rng
        ``numpy.random`` by default; anything with ``standard_normal(size=)``.
        A list gets one generator per system (each system then reproduces ASE
        run alone with that generator). One generator for a list draws ξ, η
        for system 0, then system 1, ... each step (as B ASE objects sharing
        it, stepped in turn). A ``torch.Generator`` on the batch's device draws
        on the device (fastest; not ASE's numbers).
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``,
        ``master``, ``comm``.

    Notes
    -----
    ``temperature_K`` and ``friction`` are scalars, or for a list one value
    per system; per-atom values are not supported (NotImplementedError).
    Constraints with ``redistribute_forces_md`` (``FixLinearTriatomic``) are
    not supported.
    """

    _lgv_version = 5

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature: float | None = None,
        friction: float | None = None,
        fixcm: bool = True,
        *,
        temperature_K: float | None = None,
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        if friction is None:
            raise TypeError("Missing 'friction' argument.")
        if isinstance(temperature_K, list | tuple):  # one per system (a list of Atoms)
            temperature_K = np.asarray(temperature_K, dtype=float)
        self.fr = np.asarray(friction, dtype=float) if isinstance(friction, list | tuple) else friction
        self.temp = units.kB * process_temperature(temperature, temperature_K, "eV")
        if fixcm:
            warnings.warn(_FIXCM_WARNING, FutureWarning, stacklevel=2)
        self.fix_com = fixcm
        self.rng = np.random if rng is None else rng
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> _RngLangevin:
        for index, atoms in enumerate(self.systems.atoms):
            if any(hasattr(c, "redistribute_forces_md") for c in atoms.constraints):
                raise NotImplementedError(
                    f"atoms[{index}]: constraints that redistribute the Langevin noise "
                    "(FixLinearTriatomic) are not supported"
                )
        check_rng(self.rng, len(self.systems), self.systems.device)
        return _RngLangevin(
            model,
            self.dt / units.fs,
            temperature=self._per_system_value(np.asarray(self.temp) / units.kB, "temperature_K"),
            friction=self._per_system_value(np.asarray(self.fr) * units.fs, "friction"),
            fixcm=bool(self.fix_com),
            rng=self.rng,
        )

    def todict(self) -> dict[str, Any]:
        return super().todict() | {
            "temperature_K": self.temp / units.kB,
            "friction": self.fr,
            "fixcm": self.fix_com,
        }

    def set_temperature(self, temperature: float | None = None, temperature_K: float | None = None) -> None:
        """Change the target temperature (``temperature`` in eV is deprecated, as in ASE)."""
        self.temp = units.kB * process_temperature(temperature, temperature_K, "eV")
        self._engine.temperature = torch.as_tensor(
            self._per_system_value(np.asarray(self.temp) / units.kB, "temperature_K"), dtype=torch.float64
        )
        self._parameters_changed()

    def set_friction(self, friction: float) -> None:
        """Change the friction (1/ASE time)."""
        self.fr = friction
        self._engine.friction = torch.as_tensor(
            self._per_system_value(np.asarray(friction) * units.fs, "friction"), dtype=torch.float64
        )
        self._parameters_changed()

    @property
    def _engine(self) -> NVTLangevin:
        assert isinstance(self.engine, NVTLangevin)
        return self.engine

    def set_timestep(self, timestep: float) -> None:
        """Change the time step (ASE time units)."""
        self.dt = timestep
