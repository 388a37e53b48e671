"""Small engine mixins the look-alikes use to make an engine see what ASE sees."""

from __future__ import annotations

import numpy as np
import torch

from nvalchemi_ase.data import Batch

__all__ = ["AseDegreesOfFreedom"]


class AseDegreesOfFreedom:
    """Thermostat-engine mixin: ASE's degrees of freedom per system (``get_number_of_degrees_of_freedom``).

    ASE counts 3N minus what every constraint removes (``FixCom`` 3,
    ``FixBondLength`` 1, ...), read once at construction; the engine's own
    count only knows frozen atoms. Set :attr:`ase_dof` (``[B]`` host array).
    """

    ase_dof: np.ndarray
    _ase_dof_tensor: torch.Tensor | None = None

    def degrees_of_freedom(self, batch: Batch) -> torch.Tensor:
        cached = self._ase_dof_tensor
        if cached is None or cached.device != batch.device or cached.dtype != batch.dtype:
            cached = torch.as_tensor(self.ase_dof, dtype=batch.dtype).to(batch.device)
            self._ase_dof_tensor = cached
        return cached
