"""Checks made before a run writes anything: options (exit 2 with one line) and structures (set aside).

A bad option stops the run with a :class:`CommandLineError`. A structure that
cannot run (invalid cell or positions, overlapping atoms, an element the model
has no parameters for) is *set aside*: the others run, and the structure's
index and reason go to ``summary.json`` and the screen.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from nvalchemi_ase.cli.models import CommandLineError, unsupported_elements

OVERLAP_DISTANCE = 0.5
"""Å: two atoms closer than this overlap (no bond is shorter than H₂'s 0.74 Å)."""


@dataclass(frozen=True)
class SetAside:
    """A structure that does not run: its index in the input and why."""

    index: int
    reason: str

    def text(self) -> str:
        return f"structure {self.index}: {self.reason}"


def check_options(args: argparse.Namespace) -> None:
    """Raise :class:`CommandLineError` for the first option that cannot work."""
    if not args.relax and not args.md:
        raise CommandLineError("--no-relax and --no-md together leave nothing to do")
    for name in ("steps", "relax_steps", "max_systems", "log_interval", "trajectory_interval", "max_atoms"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandLineError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    positive = {"timestep": "fs", "fmax": "eV/Å", "tau": "fs"}
    for name, unit in positive.items():
        value = getattr(args, name)
        if not (math.isfinite(value) and value > 0):
            raise CommandLineError(f"--{name} must be a positive number of {unit}, got {value}")
    if not (math.isfinite(args.temperature) and args.temperature >= 0):
        raise CommandLineError(f"--temperature must be zero or more kelvin, got {args.temperature}")
    if not (math.isfinite(args.friction) and args.friction >= 0):
        raise CommandLineError(f"--friction must be zero or more per fs, got {args.friction}")
    if not 0 <= args.andersen_prob <= 1:
        raise CommandLineError(f"--andersen-prob must be between 0 and 1, got {args.andersen_prob}")
    check_device(args.device)
    check_scale_out(args)


def check_scale_out(args: argparse.Namespace) -> None:
    """``--workers``, ``--chunk-size``, ``--checkpoint-every``: at least 1; ``--idle-timeout``: 0 or more,
    with Dask only; Dask installed when asked for."""
    for name in ("workers", "chunk_size", "checkpoint_every"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise CommandLineError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    distributed = getattr(args, "workers", None) is not None or getattr(args, "scheduler", None) is not None
    idle_timeout = getattr(args, "idle_timeout", None)
    if idle_timeout is not None:
        if not (idle_timeout >= 0 and math.isfinite(idle_timeout)):
            raise CommandLineError(
                f"--idle-timeout must be 0 (wait for ever) or more seconds, got {idle_timeout}"
            )
        if not distributed:
            raise CommandLineError("--idle-timeout is for runs on Dask (--workers or --scheduler)")
    if not distributed:
        return
    if getattr(args, "checkpoint_every", None) is not None:
        raise CommandLineError(
            "--checkpoint-every is for one-process runs; a run on Dask records each finished chunk "
            "and 'nvalchemi-ase resume' continues from there"
        )
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        raise CommandLineError(
            "--workers and --scheduler need Dask: pip install 'nvalchemi-ase[distributed]'"
        )


def check_device(device: str | None) -> None:
    """``--device``: a device torch knows, and present on this machine."""
    if device is None:
        return
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise CommandLineError(f"--device {device} is not a device name (use cpu or cuda)") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise CommandLineError(f"--device {device}: no CUDA GPU is available here (use --device cpu)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise CommandLineError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif parsed.type != "cpu":
        raise CommandLineError(f"--device {device}: only cpu and cuda are supported")


def check_sizes(structures: Sequence[Any], max_atoms: int | None) -> None:
    """``--max-atoms`` must hold the largest structure."""
    if max_atoms is None or not structures:
        return
    largest = max(range(len(structures)), key=lambda k: len(structures[k]))
    if len(structures[largest]) > max_atoms:
        raise CommandLineError(
            f"--max-atoms {max_atoms} is smaller than structure {largest} "
            f"({len(structures[largest])} atoms); raise it to at least {len(structures[largest])}"
        )


def set_aside(structures: Sequence[Any], model_name: str) -> list[SetAside]:
    """The structures that cannot run, each with its reason (host-side, before any batch exists)."""
    from nvalchemi_ase.data import BatchValidationError
    from nvalchemi_ase.data.validate import validate_atoms

    aside = []
    for index, atoms in enumerate(structures):
        try:
            validate_atoms(atoms, index)
        except BatchValidationError as error:
            aside.append(SetAside(index, str(error).split("\n")[0]))
            continue
        missing = unsupported_elements(model_name, set(atoms.get_chemical_symbols()))
        if missing:
            aside.append(SetAside(index, f"model {model_name} has no parameters for {', '.join(missing)}"))
            continue
        pair = _closest_pair(atoms)
        if pair is not None:
            i, j, distance = pair
            aside.append(
                SetAside(
                    index, f"atoms {i} and {j} overlap ({distance:.3f} Å apart, under {OVERLAP_DISTANCE} Å)"
                )
            )
    return aside


def _closest_pair(atoms: Any) -> tuple[int, int, float] | None:
    """The closest pair of atoms nearer than :data:`OVERLAP_DISTANCE`, or None."""
    if len(atoms) < 2:
        return None
    from matscipy.neighbours import neighbour_list

    probe = atoms.copy()
    if not probe.pbc.all():  # matscipy wants a cell with room around non-periodic directions
        probe.center(vacuum=OVERLAP_DISTANCE + 1.0, axis=[k for k in range(3) if not probe.pbc[k]])
    first, second, distance = neighbour_list("ijd", probe, OVERLAP_DISTANCE)
    if distance.size == 0:
        return None
    k = int(distance.argmin())
    return int(first[k]), int(second[k]), float(distance[k])
