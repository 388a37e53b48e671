"""Nothing silently wrong: a diverging system is named, an interrupted run keeps its last step.

1. Engine: one system of a batch gets a NaN position; the model gives that system
   (and only it) NaN energy and forces, and ``NaNDetectorHook`` stops the run
   naming it.
2. Look-alike: ``VelocityVerlet`` over a list is interrupted by an observer
   (as Ctrl-C would); the ``Atoms`` hold the last completed step, ``nsteps``
   agrees, and a second ``run`` goes on from there.
3. Optimizer look-alike over a list: ``opt.optimizable`` is ASE's ``Optimizable``
   protocol, all systems as one problem.

Run:  python examples/safe_runs.py [--device cpu|cuda]
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import units
from ase.build import bulk

from nvalchemi_ase import Batch, BatchedCalculator, LennardJones
from nvalchemi_ase.dynamics import NVE
from nvalchemi_ase.dynamics.hooks import NaNDetectorHook
from nvalchemi_ase.hooks.safety import NonFiniteError
from nvalchemi_ase.md.verlet import VelocityVerlet
from nvalchemi_ase.optimize import FIRE

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}


def argon(seed: int):
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    atoms.rattle(0.1, seed=seed)
    return atoms


def nan_is_caught(device: str | None) -> str:
    batch = Batch.from_atoms([argon(k) for k in range(3)], device=device)
    positions = batch.positions.clone()
    positions[40, 0] = float("nan")  # an atom of system 1
    batch.positions = positions
    try:
        NVE(LennardJones(**ARGON), dt=1.0, hooks=[NaNDetectorHook()]).run(batch, 5)
    except NonFiniteError as error:
        print(error)
        return str(error)
    raise AssertionError("the NaN went unnoticed")


class Interrupt(Exception):
    """What the observer raises (Ctrl-C raises KeyboardInterrupt, handled the same way)."""


def interrupted_run(device: str | None) -> tuple[int, float]:
    calc = BatchedCalculator(LennardJones(**ARGON), device=device)
    systems = [argon(k) for k in range(2)]
    for atoms in systems:
        atoms.calc = calc
    dyn = VelocityVerlet(systems, timestep=5 * units.fs)
    start = systems[0].positions.copy()

    def stop_at_step_7() -> None:
        if dyn.nsteps == 7:
            raise Interrupt

    dyn.attach(stop_at_step_7)
    try:
        dyn.run(100)
    except Interrupt:
        moved = float(np.abs(systems[0].positions - start).max())
        print(f"interrupted at step {dyn.nsteps}: the Atoms moved {moved:.3f} Å since the start")
    dyn.observers.clear()
    dyn.run(3)  # goes on from step 7
    return dyn.nsteps, moved


def optimizable_of_a_list(device: str | None) -> float:
    calc = BatchedCalculator(LennardJones(**ARGON), device=device)
    systems = [argon(k) for k in range(3)]
    for atoms in systems:
        atoms.calc = calc
    opt = FIRE(systems, logfile=None)
    opt.run(fmax=0.05, steps=20)
    whole = opt.optimizable
    gradient = whole.get_gradient()
    print(
        f"{whole.ndofs()} degrees of freedom, energy {whole.get_value():.4f} eV, "
        f"largest force {whole.gradient_norm(gradient):.4f} eV/Å"
    )
    return float(whole.get_value())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    args = parser.parse_args(argv)
    message = nan_is_caught(args.device)
    nsteps, moved = interrupted_run(args.device)
    energy = optimizable_of_a_list(args.device)
    return {"message": message, "nsteps": nsteps, "moved": moved, "energy": energy}


if __name__ == "__main__":
    main()
