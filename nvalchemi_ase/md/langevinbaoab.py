"""``LangevinBAOAB``: ``ase.md.langevinbaoab.LangevinBAOAB`` (constant N, V, T) over the batched engine."""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms, units

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import NVE, BaseDynamics
from nvalchemi_ase.dynamics import LangevinBAOAB as BAOABEngine
from nvalchemi_ase.lookalike.random import check_rng, draw_per_system
from nvalchemi_ase.md.md import MolecularDynamics

__all__ = ["LangevinBAOAB"]


class _RngBAOAB(BAOABEngine):
    """The BAOAB engine with ASE's draws: ``rng.normal(size=(n, 3))`` per system and step."""

    def __init__(self, *args: Any, rng: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rng = rng

    def draw_noise(self, batch: Batch) -> torch.Tensor:
        if isinstance(self.rng, torch.Generator):
            shape = (batch.num_nodes, 3)
            return torch.randn(shape, generator=self.rng, dtype=batch.dtype, device=batch.device)
        return draw_per_system(self.rng, batch, lambda rng, n: (rng.normal(size=(n, 3)),))[0]


def _generator(rng: Any) -> Any:
    """ASE's rule: a numpy Generator as is, anything else seeds one (torch generators pass through)."""
    if rng is None or isinstance(rng, np.random.Generator | torch.Generator):
        return rng
    return np.random.default_rng(rng)


class LangevinBAOAB(MolecularDynamics):
    """Langevin dynamics in the BAOAB splitting, ASE's signature and numbers (constant volume).

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Temperature in K (one per system allowed for a list); ``None``: no
        thermostat (velocity Verlet, as ASE's BAOAB without the O step).
    externalstress, hydrostatic, P_tau, P_mass, P_mass_factor, disable_cell_langevin
        ASE's variable-cell options: ``externalstress`` other than None raises
        NotImplementedError (no batched barostat yet).
    T_tau
        Velocity relaxation time in ASE time units (``None``: 50 ``timestep``,
        with ASE's warning).
    rng
        A ``numpy.random.Generator``, or a seed for one (ASE's rule; ``None``:
        a random seed, with ASE's warning); a list gives one per system; a
        ``torch.Generator`` draws on the device.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    Constraints raise NotImplementedError (ASE's class uses constraint-projected
    forces here, unlike the other integrators).
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
        P_tau: float | None = None,
        P_mass: float | None = None,
        P_mass_factor: float = 1.0,
        disable_cell_langevin: bool = False,
        rng: Any = None,
        **kwargs: Any,
    ) -> None:
        if externalstress is not None:
            raise NotImplementedError("LangevinBAOAB(externalstress=...) (variable cell) is not supported")
        self.externalstress, self.hydrostatic = None, hydrostatic
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
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> BaseDynamics:
        self._forbid_constraints("LangevinBAOAB applies no constraints")
        if self.temperature_K is None:
            return NVE(model, dt=self.dt / units.fs)
        check_rng(self.rng, len(self.systems), self.systems.device)
        return _RngBAOAB(
            model,
            self.dt / units.fs,
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            T_tau=self._per_system_value(np.asarray(self.T_tau) / units.fs, "T_tau"),
            rng=self.rng,
        )
