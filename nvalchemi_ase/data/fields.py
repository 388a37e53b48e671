"""Field declarations: every ``Batch`` field says once whether it is per atom or per system.

Slicing, joining, refilling and device moves are written once against these
declarations (see ``Batch.index_select`` and ``Batch.cat``), never per field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Scope(enum.Enum):
    """Where a field's leading dimension lives."""

    ATOM = "atom"
    """Leading dimension ``N`` (all atoms of all systems, system after system)."""
    SYSTEM = "system"
    """Leading dimension ``B`` (one row per system)."""


class Kind(enum.Enum):
    """What a field's dtype follows when the batch is cast."""

    FLOAT = "float"
    """Follows the batch's float dtype (float64 by default)."""
    INT = "int"
    """Always ``torch.long``."""
    BOOL = "bool"
    """Always ``torch.bool``."""


@dataclass(frozen=True)
class Field:
    """Declaration of one batch field.

    Parameters
    ----------
    scope
        Per atom or per system.
    kind
        Float (cast with the batch), integer or boolean.
    shape
        Trailing shape after the leading ``N`` or ``B`` dimension.
    required
        Whether every batch carries it (others appear once computed).
    """

    scope: Scope
    kind: Kind
    shape: tuple[int, ...]
    required: bool = True


FIELDS: dict[str, Field] = {
    # per atom
    "positions": Field(Scope.ATOM, Kind.FLOAT, (3,)),
    "velocities": Field(Scope.ATOM, Kind.FLOAT, (3,)),
    "masses": Field(Scope.ATOM, Kind.FLOAT, ()),
    "atomic_numbers": Field(Scope.ATOM, Kind.INT, ()),
    "atom_categories": Field(Scope.ATOM, Kind.INT, ()),
    "tags": Field(Scope.ATOM, Kind.INT, ()),
    "forces": Field(Scope.ATOM, Kind.FLOAT, (3,), required=False),
    # per system
    "cell": Field(Scope.SYSTEM, Kind.FLOAT, (3, 3)),
    "pbc": Field(Scope.SYSTEM, Kind.BOOL, (3,)),
    "status": Field(Scope.SYSTEM, Kind.INT, ()),
    "system_id": Field(Scope.SYSTEM, Kind.INT, ()),
    "energy": Field(Scope.SYSTEM, Kind.FLOAT, (1,), required=False),
    "stress": Field(Scope.SYSTEM, Kind.FLOAT, (3, 3), required=False),
}
"""The built-in fields. ``batch_idx`` and ``ptr`` are derived, not stored per field."""

MODEL_RESULTS: dict[str, Scope] = {
    "energies": Scope.ATOM,
    "magmoms": Scope.ATOM,
    "charges": Scope.ATOM,
    "magmom": Scope.SYSTEM,
    "dipole": Scope.SYSTEM,
}
"""Outputs beside energy, forces and stress that a model may return, under ASE's result names:
engines keep them as batch fields, and they come back as the Atoms' calculator results."""

FORCES_BOUND = "forces_bound"
"""An output some models give when asked (listed in their ``extra_outputs``; not an ASE result):
float64 ``[B]`` on the CPU, each system's largest absolute force component, NaN when one of its
force components or its energy is not finite. Written as the forces are, while they are still
in the cache of the core that wrote them, it lets the safety hooks
(:mod:`nvalchemi_ase.hooks.safety`) test ``B`` numbers instead of reading every force again.
Engines keep it with the batch (:func:`~nvalchemi_ase.data.bound.keep_forces_bound`)."""


class AtomCategory(enum.IntEnum):
    """Values of ``Batch.atom_categories``."""

    NORMAL = 0
    """An ordinary, moving atom."""
    FROZEN = -1
    """An atom held fixed (what ``ase.constraints.FixAtoms`` becomes)."""
