"""The neighbour backend imports only the cell list; ``nvalchemiops`` stays complete for everyone else."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
from ase.build import bulk
from nvalchemi_ase import EMT, Batch

# 864 atoms: past the direct search of small cells, so the run uses the cell list
batch = Batch.from_atoms([bulk("Cu", "fcc", a=3.61, cubic=True).repeat(6)])
energy = EMT()(batch)["energy"]
ran_init = {
    name: "__getattr__" not in vars(sys.modules[name])
    for name in ("nvalchemiops.math", "nvalchemiops.neighbors", "nvalchemiops.torch",
                 "nvalchemiops.torch.neighbors")
}
import nvalchemiops.math
import nvalchemiops.math.math
import nvalchemiops.torch
import nvalchemiops.torch.neighbors as neighbors

result = {
    "ran_init": ran_init,
    "dynamo_imported": "torch._dynamo" in sys.modules,
    "energy": float(energy[0]),
    "wpdivmod_is_the_library_one": nvalchemiops.math.wpdivmod is nvalchemiops.math.math.wpdivmod,
    "math_complete": callable(nvalchemiops.math.spline_spread),
    "neighbors_complete": callable(neighbors.neighbor_list),
    "torch_complete": callable(nvalchemiops.torch.fire2_step_coord),
}
print(json.dumps(result))
"""


def test_a_run_imports_only_the_cell_list_and_the_packages_complete_on_first_use():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["ran_init"] == dict.fromkeys(result["ran_init"], False)
    assert not result["dynamo_imported"]
    from ase.build import bulk
    from ase.calculators.emt import EMT as AseEMT

    atoms = bulk("Cu", "fcc", a=3.61, cubic=True).repeat(6)
    atoms.calc = AseEMT()
    assert abs(result["energy"] - atoms.get_potential_energy()) < 1e-10
    assert result["wpdivmod_is_the_library_one"]
    assert result["math_complete"]
    assert result["neighbors_complete"] and result["torch_complete"]


def test_a_run_on_a_small_system_prints_nothing():
    """Warp speaks only of warnings: no banner, no line per kernel module it loads (a small cell
    never imports nvalchemiops, whose import would have set that)."""
    probe = (
        "from ase.build import bulk\n"
        "from nvalchemi_ase import Batch, LennardJones\n"
        "batch = Batch.from_atoms([bulk('Ar', 'fcc', a=5.26, cubic=True)])\n"
        "LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5)(batch)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout == "" and done.stderr == ""
