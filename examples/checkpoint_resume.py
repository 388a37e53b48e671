"""A relax-then-MD run that is stopped half-way and resumed from its checkpoint, bit for bit.

Run:  python examples/checkpoint_resume.py [--steps 40] [--every 10] [--checkpoint run.ckpt]
"""

from __future__ import annotations

import argparse

from ase.build import bulk

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import FIRE, FusedStage, NVTLangevin
from nvalchemi_ase.dynamics.checkpoint import CheckpointHook, restore_checkpoint
from nvalchemi_ase.models import EMT


def structures() -> list:
    frames = [bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 1 + k % 2)) for k in range(4)]
    for seed, atoms in enumerate(frames):
        atoms.rattle(0.05, seed=seed)
    return frames


def pipeline(hooks: list) -> FusedStage:
    model = EMT()
    relax = FIRE(model, n_steps=15)
    md = NVTLangevin(
        model, dt=2.0, temperature=300.0, friction=0.01, seed=1, n_steps=1000,
        initial_temperature=300.0, velocity_seed=2,
    )  # fmt: skip
    return FusedStage([relax, md], hooks=hooks)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--checkpoint", default="run.ckpt")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    half = args.steps // 2

    # The first job: stopped after half the steps (its last checkpoint is at a multiple of --every).
    hook = CheckpointHook(args.checkpoint, every=args.every)
    first = pipeline([hook])
    with hook.catch_sigterm():
        first.run(Batch.from_atoms(structures(), device=args.device), n_steps=half + 1)

    # The second job: the same pipeline, restored, runs the remaining steps.
    second = pipeline([CheckpointHook(args.checkpoint, every=args.every)])
    restored = restore_checkpoint(args.checkpoint, second, device=args.device)
    print(f"resumed at step {restored.step_count} from {args.checkpoint}")
    second.run(restored.batch, n_steps=args.steps - restored.step_count)

    straight = pipeline([]).run(Batch.from_atoms(structures(), device=args.device), n_steps=args.steps)
    difference = (straight.positions - restored.batch.positions).abs().max().item()
    print(f"largest position difference against an uninterrupted run: {difference} Å")
    return difference


if __name__ == "__main__":
    main()
