"""ASE's ``fmax`` per system (:func:`nvalchemi_ase.ops.thermo.max_force`) as one warp kernel on a CPU.

An optimizer tests convergence every step. With torch that is five operations
over the atoms (squares, two column adds, a scatter maximum, a root), ~0.1 ms
a step on 64 systems of 32 atoms in a running optimizer against a few
microseconds of arithmetic; here each system's thread loops over its atoms.
The squared norms are summed as ``(x² + y²) + z²`` and the root is the CPU's
own, correctly rounded, as numpy's in ASE's ``np.linalg.norm(forces, axis=1).max()``
(torch's vectorised CPU ``sqrt`` is at times one unit in the last place off).
"""

from __future__ import annotations

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops.buffers import Buffers, view
from nvalchemi_ase.ops.warp_launch import launch

wp = initialised_warp()


@wp.kernel(enable_backward=False)
def _max_force(
    first: wp.int32,
    ptr: wp.array(dtype=wp.int64),
    forces: wp.array(dtype=wp.vec3d),
    largest: wp.array(dtype=wp.float64),
):
    b = first + wp.tid()
    top = wp.float64(0.0)
    for i in range(wp.int32(ptr[b]), wp.int32(ptr[b + 1])):
        f = forces[i]
        square = (f[0] * f[0] + f[1] * f[1]) + f[2] * f[2]
        if square > top or wp.isnan(square):  # a NaN stays (later comparisons with it are false)
            top = square
    largest[b] = wp.sqrt(top)


_OUTPUTS = Buffers()


def fits(forces: torch.Tensor) -> bool:
    """Whether the kernel takes these forces: float64, contiguous, on a CPU, no autograd history."""
    return (
        forces.device.type == "cpu"
        and forces.dtype == torch.float64
        and forces.is_contiguous()
        and not forces.requires_grad
    )


def max_force(forces: torch.Tensor, ptr: torch.Tensor) -> torch.Tensor:
    """``[B]`` largest per-atom force norm per system (0 for an empty one); ``ptr`` ``[B + 1]`` int64.

    A NaN force gives NaN, as the torch and numpy maxima do: such a system never converges."""
    largest = _OUTPUTS.take((ptr.shape[0] - 1,), torch.float64, forces.device)
    inputs = [view(ptr), view(forces, wp.vec3d), view(largest)]
    launch(_max_force, largest.shape[0], inputs, forces.device, rows_per_thread=1 << 30)
    return largest
