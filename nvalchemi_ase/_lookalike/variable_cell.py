"""Look-alikes whose engine changes the cell: the device cells go to the ``Atoms`` with the positions."""

from __future__ import annotations

from typing import Any

from nvalchemi_ase.data.host import to_host

__all__ = ["VariableCell"]


class VariableCell:
    """Look-alike mixin (before the MD base): cells written whenever the state is reported.

    The cells reach the ``Atoms`` before their positions (and the calculator
    caches made for them). Cells edited on the host between steps are not
    sent to the device.
    """

    systems: Any

    def _report(
        self, state: bool, log: bool, observe: bool, extras: bool = True, everyone: bool = False
    ) -> None:
        if state:
            cells = to_host([self.systems.batch.cell])[0]
            for b, atoms in enumerate(self.systems.atoms):
                atoms.set_cell(cells[b], scale_atoms=False, apply_constraint=False)
        super()._report(state, log, observe, extras, everyone)  # type: ignore[misc]
