"""``NPT``: ``ase.md.npt.NPT``, ASE's deprecated alias of ``MelchionnaNPT``, over the batched engine."""

from __future__ import annotations

import warnings
from typing import Any

from nvalchemi_ase.md.melchionna import MelchionnaNPT

__all__ = ["NPT"]


class NPT(MelchionnaNPT):
    """ASE's ``NPT``: :class:`~nvalchemi_ase.md.melchionna.MelchionnaNPT` with ASE's FutureWarning."""

    classname = "NPT"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn(
            "NPT thermostat has been moved/renamed to ase.md.melchionna.MelchionnaNPT. "
            "Please use this class instead (or a newer NPT thermostat!)",
            FutureWarning,
            stacklevel=2,
        )
        super().__init__(*args, **kwargs)
