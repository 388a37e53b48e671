"""ops.warp_launch: a recorded CPU launch stays callable while anyone holds it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

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
