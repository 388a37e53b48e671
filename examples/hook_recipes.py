"""Hook recipes: logging, snapshots, safety checks, a bias, profiling and drift monitoring, runnable.

Each recipe is a short snippet that expects ``model``, ``batch`` and
``DemoDynamics`` to exist; :func:`main` provides them (a small argon crystal and
Lennard-Jones) and runs every recipe in a temporary folder.
``tests/test_hook_recipes.py`` checks what each one produces.

Run:  python examples/hook_recipes.py [--only logging,snapshots,...]
"""

from __future__ import annotations

import argparse
import os
import tempfile

import numpy as np
from ase.build import bulk

from nvalchemi_ase import Batch, LennardJones
from nvalchemi_ase.dynamics import DemoDynamics

EXAMPLES = {
    "logging": """\
from nvalchemi_ase.dynamics.hooks import LoggingHook
hook = LoggingHook(frequency=100, backend="csv", log_path="md_log.csv")
dynamics = DemoDynamics(model=model, n_steps=10_000, dt=0.5, hooks=[hook])
dynamics.run(batch)
""",
    "snapshots": """\
from nvalchemi_ase.dynamics.hooks import SnapshotHook
from nvalchemi_ase.dynamics import HostMemory
sink = HostMemory(capacity=10_000)
hook = SnapshotHook(sink=sink, frequency=10)
dynamics = DemoDynamics(model=model, n_steps=1_000, dt=0.5, hooks=[hook])
dynamics.run(batch) # 100 snapshots
trajectory = sink.read()
""",
    "safety": """\
from nvalchemi_ase.dynamics.hooks import MaxForceClampHook, NaNDetectorHook
dynamics = DemoDynamics(
model=model,
dt=0.5,
hooks=[
# Clamp first, then check — both fire at AFTER_COMPUTE
# in registration order.
MaxForceClampHook(max_force=50.0, log_clamps=True),
NaNDetectorHook(extra_keys=["stress"]),
],
)
""",
    "bias": """\
from nvalchemi_ase.hooks import BiasedPotentialHook
from nvalchemi_ase.dynamics.base import DynamicsStage
def harmonic_restraint(batch):
    \"\"\"Restrain center of mass to the origin.\"\"\"
    k = 10.0 # eV/Ų
    com = batch.positions.mean(dim=0, keepdim=True)
    bias_energy = 0.5 * k * (com ** 2).sum().unsqueeze(0).unsqueeze(0)
    bias_forces = -k * com.expand_as(batch.positions) / batch.num_nodes
    return bias_energy, bias_forces
hook = BiasedPotentialHook(bias_fn=harmonic_restraint, stage=DynamicsStage.AFTER_COMPUTE)
dynamics = DemoDynamics(model=model, dt=0.5, hooks=[hook])
""",
    "profiling": """\
from nvalchemi_ase.dynamics.hooks import ProfilerHook
hook = ProfilerHook(enable_nvtx=True, enable_timer=True, frequency=10)
dynamics = DemoDynamics(model=model, n_steps=1_000, dt=0.5, hooks=[hook])
# Run under: nsys profile python my_script.py
dynamics.run(batch)
""",
    "drift": """\
from nvalchemi_ase.dynamics.hooks import EnergyDriftMonitorHook
hook = EnergyDriftMonitorHook(
threshold=1e-5,
metric="per_atom_per_step",
action="raise", # or "warn" for production
frequency=100,
)
dynamics = DemoDynamics(model=model, dt=0.5, hooks=[hook])
""",
}


def namespace() -> dict:
    """What the recipes assume: a model, a one-system batch (the bias example's energy is [1, 1])."""
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.rattle(0.05, seed=0)
    atoms.set_velocities(np.random.default_rng(0).normal(scale=0.002, size=(len(atoms), 3)))
    return {
        "model": LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5, smooth=True),
        "batch": Batch.from_atoms(atoms, device="cpu"),
        "DemoDynamics": DemoDynamics,
    }


def run(name: str, scope: dict) -> dict:
    """Execute one snippet in ``scope`` (which it extends) and return the scope."""
    exec(compile(EXAMPLES[name], f"hook recipe '{name}'", "exec"), scope)
    return scope


def main(argv: list[str] | None = None) -> dict[str, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(EXAMPLES), help="comma-separated snippet names")
    args = parser.parse_args(argv)
    done = {}
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            for name in args.only.split(","):
                done[name] = run(name, namespace())
                print(f"ran the '{name}' hook recipe")
        finally:
            os.chdir(here)
    return done


if __name__ == "__main__":
    main()
