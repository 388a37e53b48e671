"""``NoseHooverChainNVT``: ``ase.md.nose_hoover_chain.NoseHooverChainNVT`` over the batched engine."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms, units
from ase.constraints import FixAtoms, FixCartesian, FixCom, FixedPlane, Hookean

from nvalchemi_ase.data import AtomCategory, Batch
from nvalchemi_ase.dynamics import NoseHooverChainNVT as NoseHooverEngine
from nvalchemi_ase.md.md import MolecularDynamics
from nvalchemi_ase.ops.segment import segment_broadcast

__all__ = ["NoseHooverChainNVT", "no_fixcom_mixture", "only_constraints"]

SUPPORTED = (FixAtoms, FixCartesian, FixCom, FixedPlane, Hookean)
"""The constraints both look-alikes (NHC, constant-cell BAOAB) reproduce ASE's numbers with."""


def only_constraints(systems: Sequence[Atoms], name: str, allowed: tuple[type, ...], why: str) -> None:
    """Raise NotImplementedError naming the first constraint whose type is not in ``allowed``."""
    for index, atoms in enumerate(systems):
        for constraint in atoms.constraints:
            if type(constraint) not in allowed:
                names = ", ".join(kind.__name__ for kind in allowed)
                raise NotImplementedError(
                    f"atoms[{index}] has a {type(constraint).__name__} constraint: "
                    f"{name} supports only {names} ({why})"
                )


def no_fixcom_mixture(systems: Sequence[Atoms], name: str) -> None:
    """Raise NotImplementedError for ``FixCom`` next to a constraint that holds positions.

    ASE's ``FixCom`` then shifts (NHC) or gives velocities to (BAOAB) the
    atoms the other constraint holds, so that they move.
    """
    for index, atoms in enumerate(systems):
        kinds = {type(constraint) for constraint in atoms.constraints}
        if FixCom in kinds and kinds - {FixCom, Hookean}:
            other = sorted(kind.__name__ for kind in kinds - {FixCom, Hookean})[0]
            raise NotImplementedError(
                f"atoms[{index}] has FixCom with a {other} constraint: in ASE's {name}, FixCom moves "
                f"the atoms {other} holds; not reproduced here"
            )


class _PrivateMomentaEngine(NoseHooverEngine):
    """The chain engine with ASE's private momenta ``_p`` for every constrained atom component.

    ASE's class integrates unconstrained private ``_q``/``_p`` and shows the
    ``Atoms`` their constrained copies; the chain reads ``_p``. Here the
    components that a constraint changes (``private``, ``[N, 3]`` bool) get
    their private velocities back before each half step; the others follow
    the batch (so that host edits of them are taken into account).
    """

    private: torch.Tensor | None = None

    def _resume_frozen(self, batch: Batch) -> None:
        if self.private is None:
            super()._resume_frozen(batch)
        else:
            batch.velocities = torch.where(self.private, batch.nhc_frozen_velocities, batch.velocities)


class NoseHooverChainNVT(MolecularDynamics):
    """Isothermal MD with a Nosé–Hoover chain, ASE's signature and numbers.

    Parameters
    ----------
    atoms, timestep
        As :class:`~nvalchemi_ase.md.md.MolecularDynamics` (``timestep`` in ASE time units).
    temperature_K
        Target temperature in K (one per system allowed for a list).
    tdamp
        Thermostat damping time in ASE time units (one per system allowed).
    tchain, tloop
        Chain length and number of sub-steps.
    **kwargs
        ``trajectory``, ``logfile``, ``loginterval``, ``append_trajectory``, ``master``, ``comm``.

    Notes
    -----
    ASE's class keeps private copies of positions and momenta and overwrites
    edits made between runs; here edits are taken into account. ``FixAtoms``
    runs as in ASE: the fixed atoms stay put with zero momenta, while their
    private momenta (kicked by the forces, scaled by the chain) count in the
    chain's kinetic energy, and the chain drives 3N degrees of freedom, fixed
    atoms included. ``FixCartesian``, ``FixCom``, ``FixedPlane`` and
    ``Hookean`` (alone or mixed) run as in ASE too: the chain reads the
    private, unconstrained momenta of the constrained components (ASE's
    ``_p``; host edits of those are not taken into account), the ``Atoms``
    show them constrained. ``FixBondLength(s)`` and other constraints raise
    NotImplementedError (ASE's private positions drift away from the bonds
    and it re-applies the constraint three times a step), and so does
    ``FixCom`` next to anything but ``Hookean`` (ASE's ``FixCom`` then moves
    the atoms the other constraint holds).
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        timestep: float,
        temperature_K: float | Sequence[float],
        tdamp: float | Sequence[float],
        tchain: int = 3,
        tloop: int = 1,
        **kwargs: Any,
    ) -> None:
        self.temperature_K = temperature_K
        self.tdamp, self.tchain, self.tloop = tdamp, tchain, tloop
        super().__init__(atoms, timestep, **kwargs)

    def _make_engine(self, model: Any) -> NoseHooverEngine:
        only_constraints(
            self.systems.atoms,
            type(self).__name__,
            SUPPORTED,
            "ASE's private positions drift off other constraints (e.g. bonds), which it re-applies "
            "several times a step; not reproduced here",
        )
        no_fixcom_mixture(self.systems.atoms, type(self).__name__)
        return _PrivateMomentaEngine(
            model,
            self.dt / units.fs,
            temperature=self._per_system_value(self.temperature_K, "temperature_K"),
            tdamp=self._per_system_value(np.asarray(self.tdamp) / units.fs, "tdamp"),
            tchain=self.tchain,
            tloop=self.tloop,
            frozen_momenta=True,
        )

    def _install_hooks(self) -> None:
        super()._install_hooks()
        plan, batch = self.constraint_plan, self.systems.batch
        if not (plan.native or plan.host_systems):
            return  # FixAtoms alone, or nothing: the frozen atoms' private momenta
        whole = torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
        if plan.com_systems is not None:
            whole |= torch.as_tensor(plan.com_systems, device=batch.device)
        whole[plan.host_systems] = True
        private = (batch.atom_categories == AtomCategory.FROZEN.value) | segment_broadcast(
            whole, batch.batch_idx
        )
        private = private.unsqueeze(1).expand(-1, 3)
        if plan.fixed_components is not None:
            private = private | torch.as_tensor(plan.fixed_components, device=batch.device)
        assert isinstance(self.engine, _PrivateMomentaEngine)
        self.engine.private = private

    def get_conserved_energy(self) -> float | np.ndarray:
        """Potential + kinetic + thermostat energy (eV; an array for a list), from the device."""
        assert isinstance(self.engine, NoseHooverEngine)
        self._prime()
        batch = self.systems.batch
        masses = batch.masses.unsqueeze(1)
        kinetic = (0.5 * masses * batch.velocities.square()).sum(dim=1)
        kinetic = kinetic.new_zeros(batch.num_graphs).index_add_(0, batch.batch_idx, kinetic)
        total = batch.energy.view(-1) + kinetic + self.engine.thermostat_energy(batch)
        values = total.detach().cpu().numpy().astype(float)
        return float(values[0]) if len(values) == 1 else values
