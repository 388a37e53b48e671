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
from ase import Atoms

from nvalchemi_ase._lookalike.host_constraints import HostConstraintHook
from nvalchemi_ase._lookalike.parameters import PerSystem, engine_value
from nvalchemi_ase._lookalike.random import ase_noise
from nvalchemi_ase.data import Batch
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import NVTLangevin
from nvalchemi_ase.dynamics.noise import Draw, NoiseSource
from nvalchemi_ase.md.md import MolecularDynamics, process_temperature
from nvalchemi_ase.units import ev_to_kelvin, internal_to_fs, kelvin_to_ev, rate_internal_to_fs

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


class _RedistributedNoise:
    """ASE's redistribution of ξ and η within linear triatomics, on the host, for the systems that need it.

    ASE's ``Langevin.step`` draws ξ, η, then lets each constraint with
    ``redistribute_forces_md`` redistribute them (``rand=True``) before they
    are used. This noise source wraps the engine's: those systems' rows of
    every per-atom draw go to the host, are redistributed, and come back;
    the other systems do no host work.
    """

    def __init__(
        self, inner: NoiseSource, hook: HostConstraintHook, starts: np.ndarray, device: torch.device
    ) -> None:
        self.inner = inner
        self.hook = hook
        self.systems = hook.noise_systems
        rows = [np.arange(starts[b], starts[b + 1]) for b in self.systems]
        local = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
        self.local = [slice(int(local[k]), int(local[k + 1])) for k in range(len(rows))]
        self.index = torch.as_tensor(np.concatenate(rows), dtype=torch.long, device=device)

    def draw(self, batch: Batch, draws: Sequence[Draw]) -> list[torch.Tensor]:
        values = self.inner.draw(batch, draws)
        return [self.redistribute(v) if d.per_atom else v for v, d in zip(values, draws, strict=True)]

    def redistribute(self, noise: torch.Tensor) -> torch.Tensor:
        """``[N, 3]`` noise with the constrained systems' rows redistributed on the host."""
        (host,) = to_host([noise.index_select(0, self.index)])
        for b, rows in zip(self.systems, self.local, strict=True):
            self.hook.redistribute_noise(b, host[rows])
        return noise.index_copy(0, self.index, torch.as_tensor(host, dtype=noise.dtype).to(noise.device))


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
    ``temperature_K`` and ``friction`` are scalars or, as in ASE, one value
    per atom as an ``(N, 1)`` array (anything that broadcasts against
    ``masses`` and the ``(N, 3)`` moves, with one value per atom). For a list
    of systems: one value; one per system; a list with one entry per system,
    each a scalar or that system's ``(n, 1)`` array; or an ``(N, 1)`` array
    over all atoms in system order. An ``(N,)`` array fails in ASE and raises
    ValueError here; per-direction values (``(N, 3)`` or ``(3,)`` arrays that
    differ along the last axis) work in ASE but raise NotImplementedError.
    Constraints with ``redistribute_forces_md`` (``FixLinearTriatomic``)
    redistribute ξ and η on the host, as ASE does, for the systems that carry
    them (host work for those systems only).
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
        self._systems_given = None if isinstance(atoms, Atoms) else len(atoms)
        self.fr = self._entries(friction)
        self.temp = kelvin_to_ev(
            process_temperature(self._entries(temperature), self._entries(temperature_K), "eV")
        )
        if fixcm:
            warnings.warn(_FIXCM_WARNING, FutureWarning, stacklevel=2)
        self.fix_com = fixcm
        self.rng = np.random if rng is None else rng
        super().__init__(atoms, timestep, **kwargs)
        hook = self._host_constraints
        if hook is not None and hook.noise_systems:
            engine = self._engine
            engine.noise = _RedistributedNoise(engine.noise, hook, self.systems.starts, self.systems.device)

    def _make_engine(self, model: Any) -> NVTLangevin:
        return NVTLangevin(
            model,
            internal_to_fs(self.dt),
            temperature=self._langevin_value(ev_to_kelvin(self.temp), "temperature_K"),
            friction=self._langevin_value(rate_internal_to_fs(self.fr), "friction"),
            fixcm=bool(self.fix_com),
            noise=ase_noise(self.rng, len(self.systems), self.systems.device),
        )

    def todict(self) -> dict[str, Any]:
        return super().todict() | {
            "temperature_K": ev_to_kelvin(self.temp),
            "friction": self.fr,
            "fixcm": self.fix_com,
        }

    def set_temperature(self, temperature: float | None = None, temperature_K: float | None = None) -> None:
        """Change the target temperature (``temperature`` in eV is deprecated, as in ASE)."""
        temp = kelvin_to_ev(
            process_temperature(self._entries(temperature), self._entries(temperature_K), "eV")
        )
        self._engine.temperature = self._langevin_value(ev_to_kelvin(temp), "temperature_K")  # checked there
        self.temp = temp  # only once accepted: an error changes nothing

    def set_friction(self, friction: Any) -> None:
        """Change the friction (1/ASE time; the forms ``friction`` takes at construction)."""
        fr = self._entries(friction)
        self._engine.friction = self._langevin_value(rate_internal_to_fs(fr), "friction")
        self.fr = fr

    # ------------------------------------------------------------------ per-atom values
    def _entries(self, values: Any) -> Any:
        """A list/tuple as an array; a ``PerSystem`` for a list of Atoms (one entry each, some arrays)."""
        if not isinstance(values, list | tuple):
            return values
        per_system = self._systems_given is not None and len(values) == self._systems_given
        if per_system and any(np.ndim(entry) > 0 for entry in values):
            return PerSystem(values)
        return np.asarray(values, dtype=float)

    def _langevin_value(self, values: Any, name: str) -> float | torch.Tensor:
        """The engine's temperature/friction: a float, ``[B]`` per system or ``[N]`` per atom."""
        return engine_value(values, name, [len(atoms) for atoms in self.systems.atoms], per_atom=True)

    @property
    def _engine(self) -> NVTLangevin:
        assert isinstance(self.engine, NVTLangevin)
        return self.engine

    def set_timestep(self, timestep: float) -> None:
        """Change the time step (ASE time units)."""
        self.dt = timestep
