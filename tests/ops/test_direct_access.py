"""ops.direct_access: warp's indexing without its negative-index wrap and run-time strides, same values."""

from __future__ import annotations

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops import direct_access as direct

wp = initialised_warp()


@wp.kernel(enable_backward=False)
def _gather_scatter(
    matrix: wp.array2d(dtype=wp.int32),
    scalars: wp.array(dtype=wp.float64),
    matrices: wp.array(dtype=wp.mat33d),
    padded_source: wp.array(dtype=wp.vec4d),
    padded: wp.array(dtype=wp.vec4d),
    padded_read: wp.array2d(dtype=wp.vec4d),
):
    i = wp.tid()
    k = int(0)  # noqa: UP018, RUF046 (warp: a literal is a constant the loop cannot change)
    while k < matrix.shape[1]:
        j = direct.entry(matrix, i, k)
        padded_read[i, k] = direct.padded_at(padded_source, j)
        k += 1
    # each row writes only to itself: no two threads share an element
    direct.add_scalar(scalars, i, wp.float64(0.5))
    direct.add_matrix(matrices, i, wp.identity(3, dtype=wp.float64))
    one = wp.float64(1.0)
    direct.subtract_padded(padded, i, wp.vec4d(one, one, one, one))


def test_reads_and_writes_are_warps_indexing():
    generator = torch.Generator().manual_seed(0)
    n, k = 7, 5
    matrix = torch.randint(0, n, (n, k), generator=generator, dtype=torch.int32)
    scalars = torch.randn(n, generator=generator, dtype=torch.float64)
    matrices = torch.randn(n, 3, 3, generator=generator, dtype=torch.float64)
    padded = torch.randn(n, 4, generator=generator, dtype=torch.float64)
    padded_source = padded.clone()
    padded_read = torch.zeros(n, k, 4, dtype=torch.float64)
    before = scalars.clone(), matrices.clone()
    wp.launch(
        _gather_scatter,
        dim=n,
        inputs=[
            wp.from_torch(matrix),
            wp.from_torch(scalars),
            wp.from_torch(matrices, dtype=wp.mat33d),
            wp.from_torch(padded_source, dtype=wp.vec4d),
            wp.from_torch(padded, dtype=wp.vec4d),
            wp.from_torch(padded_read, dtype=wp.vec4d),
        ],
        device="cpu",
    )
    assert torch.equal(scalars, before[0] + 0.5)
    assert torch.equal(matrices, before[1] + torch.eye(3, dtype=torch.float64))
    assert torch.equal(padded_read, padded_source[matrix.long()])
    assert torch.equal(padded, padded_source - 1.0)


def test_contiguous_tells_the_layouts_apart():
    square = torch.zeros(4, 4)
    assert direct.contiguous(square, square[1:])
    assert not direct.contiguous(square, square.t())
    assert not direct.contiguous(square[:, :2])
