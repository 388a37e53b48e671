"""ops.warp_launch: a recorded CPU launch stays callable while anyone holds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch

from nvalchemi_ase.neighbors._backend import initialised_warp
from nvalchemi_ase.ops import warp_launch
from nvalchemi_ase.ops.buffers import view

wp = initialised_warp()

SCENARIO = textwrap.dedent(
    """
    import gc

    import torch

    from nvalchemi_ase.neighbors._backend import initialised_warp
    from nvalchemi_ase.ops import warp_launch
    from nvalchemi_ase.ops.buffers import view

    wp = initialised_warp()


    @wp.kernel(enable_backward=False)
    def doubled(first: wp.int32, values: wp.array(dtype=wp.float64), out: wp.array(dtype=wp.float64)):
        i = first + wp.tid()
        out[i] = wp.float64(2.0) * values[i]


    def another_kernel():
        @wp.kernel(enable_backward=False)
        def tripled(first: wp.int32, values: wp.array(dtype=wp.float64), out: wp.array(dtype=wp.float64)):
            i = first + wp.tid()
            out[i] = wp.float64(3.0) * values[i]

        return tripled


    cpu = torch.device("cpu")
    values, out = torch.arange(100_000, dtype=torch.float64), torch.zeros(100_000, dtype=torch.float64)
    inputs = [view(values), view(out)]
    warp_launch._load_on_cpu(doubled)
    warp_launch._recorded(doubled, 0, values.numel(), cpu, inputs).launch()
    tripled = another_kernel()  # the module gains a kernel: compiled and loaded again
    warp_launch._load_on_cpu(tripled)
    launcher = warp_launch._recorded(doubled, 0, values.numel(), cpu, inputs)  # recorded before that
    warp_launch._LAUNCHES.clear()  # what a full cache does, possibly in the middle of a launch list
    gc.collect()
    out.zero_()
    for _ in range(3):
        memory = [bytearray(1 << 20) for _ in range(50)]  # let the allocator reuse what was freed
        launcher.launch()
    assert torch.equal(out, 2.0 * values)
    """
)


def test_a_launcher_outlives_the_cache_and_its_modules_reload(tmp_path):
    """The launcher holds its module's earlier compiled code; before it did, this script died of a
    segmentation fault (the full suite did too, now and then, in the half-list kernel's tests)."""
    script = tmp_path / "scenario.py"  # warp reads a kernel's source from its file
    script.write_text(SCENARIO)
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=dict(os.environ)
    )
    assert result.returncode == 0, (result.returncode, result.stderr[-2000:])


@wp.kernel(enable_backward=False)
def _scaled(
    first: wp.int32, values: wp.array(dtype=wp.float64), factor: wp.float64, out: wp.array(dtype=wp.float64)
):
    i = first + wp.tid()
    out[i] = factor * values[i]


def test_launches_over_new_rows_and_views_write_those_rows_with_those_arguments():
    """A launch not recorded before is the kernel's last one resized: each must take its own first
    row, row count, tensors and scalar, whichever launch it was made from."""
    cpu = torch.device("cpu")
    warp_launch._load_on_cpu(_scaled)
    sources = [torch.arange(1.0, 301.0, dtype=torch.float64) * (k + 1) for k in range(3)]
    outs = [torch.zeros(300, dtype=torch.float64) for _ in range(2)]
    cases = [
        (0, 300, 0, 0, 2.0),
        (7, 5, 1, 0, 3.0),
        (40, 260, 2, 1, -1.5),
        (7, 5, 0, 1, 2.0),
        (299, 1, 1, 1, 4.0),
    ]
    for _ in range(2):  # then every launch is found recorded
        for first, rows, source, out, factor in cases:
            outs[out].zero_()
            inputs = [view(sources[source]), warp_launch.float64_scalar(factor), view(outs[out])]
            warp_launch.launch_shares([[(_scaled, first, rows, inputs)]], cpu)
            expected = torch.zeros(300, dtype=torch.float64)
            expected[first : first + rows] = factor * sources[source][first : first + rows]
            assert torch.equal(outs[out], expected), (first, rows, source, out, factor)
        # split over threads: each share a range of its own
        outs[0].zero_()
        warp_launch.launch(
            _scaled, 300, [view(sources[2]), warp_launch.float64_scalar(0.5), view(outs[0])], cpu, 16
        )
        assert torch.equal(outs[0], 0.5 * sources[2])
