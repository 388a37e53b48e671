"""A guard against a oneMKL race that makes torch's first CPU ``exp``, ``sqrt``, ``log``... inaccurate.

On a CPU, torch computes elementwise math functions of contiguous float32 and
float64 tensors with oneMKL's vector math library (VML). oneMKL picks each
function's kernel on that function's first call; when the first call runs on
several threads at once (VML threads its own calls), one thread can run a
low-accuracy kernel for its part of that one call (pytorch/pytorch#188792,
oneMKL 2024.2, which torch's wheels bundle; fixed from oneMKL 2025.0). Measured
here: in 6 of 40 fresh processes the first ``torch.exp`` of 4,364 float64
values was off by up to 3.3e-9 relative (a correct one is within 2.2e-16), and
a float64 Morse model's first forces by 1e-5 relative; later calls are exact.

:func:`warm_up` calls each of those functions once on one element of each
dtype, on one thread, so their kernels are chosen before any concurrent call.
It runs when :mod:`nvalchemi_ase.ops` is imported (every model imports it),
takes about 0.1 ms, and changes no result of a correct call.
"""

from __future__ import annotations

import torch

FUNCTIONS = (
    torch.abs,
    torch.acos,
    torch.asin,
    torch.atan,
    torch.cos,
    torch.cosh,
    torch.erf,
    torch.erfc,
    torch.erfinv,
    torch.exp,
    torch.expm1,
    torch.lgamma,
    torch.log,
    torch.log10,
    torch.log1p,
    torch.log2,
    torch.reciprocal,
    torch.rsqrt,
    torch.sigmoid,
    torch.sin,
    torch.sinh,
    torch.sqrt,
    torch.tan,
    torch.tanh,
    torch.trunc,
)
"""The elementwise functions torch may hand to VML (a superset: a call that does not reach it costs
a microsecond)."""


def warm_up() -> None:
    """Call each of :data:`FUNCTIONS` once on one float32 and one float64 element (a no-op without MKL)."""
    if not torch.backends.mkl.is_available():
        return
    for dtype in (torch.float32, torch.float64):
        value = torch.full((1,), 0.5, dtype=dtype)
        for function in FUNCTIONS:
            function(value)
