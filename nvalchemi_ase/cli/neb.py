"""``nvalchemi-ase neb``: minimum energy paths and barriers between end states, many bands at once.

``nvalchemi-ase neb initial.traj final.traj --images 5 --model emt --climb``
relaxes one band; ``--pairs pairs.txt`` (one ``initial final`` pair of
structure files a line, relative to the pairs file) relaxes many in one
batch. Every band is an ASE ``NEB`` (linear or IDPP interpolation) relaxed
by our batched optimizer; the output folder gets ``band_NNN.traj`` (the
final band, one frame per image: ``ase gui band_000.traj`` and
``ase.mep.NEBTools`` read it), ``summary.json`` (forward and reverse
barriers, energies, convergence) and ``energy_profile.png``.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from nvalchemi_ase.cli.heap import SetUpHeap
from nvalchemi_ase.cli.models import CommandLineError, make_model, parse_parameters

__all__ = ["add_command", "run_command"]

OPTIMIZERS = ("FIRE", "BFGS", "LBFGS", "MDMin")
METHODS = ("improvedtangent", "aseneb", "eb", "spline", "string")


def add_command(commands: Any) -> None:
    """Add ``neb`` to the ``nvalchemi-ase`` sub-commands."""
    parser = commands.add_parser("neb", help="nudged elastic bands between end states (barriers)")
    parser.add_argument("ends", nargs="*", help="initial and final structure files (or use --pairs)")
    parser.add_argument("--pairs", default=None, help="file of 'initial final' lines, one band each")
    parser.add_argument("--images", type=int, default=5, help="images per band, ends included (default 5)")
    parser.add_argument("--model", default="emt", help="lj, morse, emt, or module:Class (default emt)")
    parser.add_argument("--model-param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--climb", action="store_true", help="climbing image")
    parser.add_argument("--method", choices=METHODS, default="improvedtangent")
    parser.add_argument("--k", type=float, default=0.1, help="spring constant, eV/Å² (default 0.1)")
    parser.add_argument("--interpolate", choices=("linear", "idpp"), default="linear")
    parser.add_argument("--mic", action="store_true", help="interpolate with the minimum-image convention")
    parser.add_argument("--optimizer", choices=OPTIMIZERS, default="FIRE")
    parser.add_argument("--fmax", type=float, default=0.05, help="eV/Å (default 0.05)")
    parser.add_argument("--steps", type=int, default=1000, help="optimizer steps at most (default 1000)")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    parser.add_argument("--output", "-o", default="nvalchemi-ase-neb", help="output folder")


def run_command(args: argparse.Namespace, heap: SetUpHeap | None = None) -> int:
    """Build the bands, relax them together, write the outputs; 0 when every band converged, else 1.

    ``heap`` (the command line's) is settled once the bands are built, before they relax."""
    import ase.io
    import torch
    from ase.mep import NEB

    from nvalchemi_ase import BatchedCalculator
    from nvalchemi_ase import optimize as optimizers

    pairs = _pairs(args)
    if args.images < 3:
        raise CommandLineError(
            f"--images must be at least 3 (two ends and one moving image), got {args.images}"
        )
    model = make_model(args.model, parse_parameters(args.model_param))
    output = _output(Path(args.output))
    dtype = torch.float64 if args.dtype == "float64" else torch.float32
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    bands = []
    for b, (initial, final) in enumerate(pairs):
        if len(initial) != len(final) or (initial.numbers != final.numbers).any():
            raise CommandLineError(f"pair {b}: the initial and final structures hold different atoms")
        images = [initial.copy() for _ in range(args.images - 1)] + [final.copy()]
        for image in images:
            image.calc = BatchedCalculator(model, device=device, dtype=dtype)
        neb = NEB(images, k=args.k, climb=args.climb, method=args.method)
        neb.interpolate(method=args.interpolate, mic=args.mic, apply_constraint=False)
        bands.append(neb)
    print(f"{len(bands)} band(s) of {args.images} images, model {args.model}, output in {output}", flush=True)
    optimizer = getattr(optimizers, args.optimizer)(bands, logfile=None)
    if heap is not None:
        heap.settle()
    optimizer.run(fmax=args.fmax, steps=args.steps)
    summary = _summary(bands, args, optimizer.nsteps)
    for b, neb in enumerate(bands):
        ase.io.write(output / f"band_{b:03d}.traj", list(neb.iterimages()))
    (output / "summary.json").write_text(json.dumps(summary, indent=2))
    _plot(bands, output / "energy_profile.png")
    for row in summary["bands"]:
        state = "converged" if row["converged"] else "NOT converged"
        print(
            f"band {row['band']}: forward barrier {row['forward_barrier']:.4f} eV, "
            f"reverse {row['reverse_barrier']:.4f} eV, fmax {row['fmax']:.4f} ({state})"
        )
    print(f"open a band with:  ase gui {output / 'band_000.traj'}")
    return 0 if all(row["converged"] for row in summary["bands"]) else 1


def _pairs(args: argparse.Namespace) -> list[tuple[Any, Any]]:
    if args.pairs is not None:
        if args.ends:
            raise CommandLineError("give either two structure files or --pairs, not both")
        listing = Path(args.pairs)
        if not listing.is_file():
            raise CommandLineError(f"pairs file {listing} does not exist")
        lines = [line.split() for line in listing.read_text().splitlines() if line.strip()]
        lines = [line for line in lines if not line[0].startswith("#")]
        for number, line in enumerate(lines, start=1):
            if len(line) != 2:
                raise CommandLineError(
                    f"{listing}, pair {number}: expected 'initial final', got {' '.join(line)}"
                )
        paths = [(listing.parent / first, listing.parent / second) for first, second in lines]
    elif len(args.ends) == 2:
        paths = [(Path(args.ends[0]), Path(args.ends[1]))]
    else:
        raise CommandLineError("give an initial and a final structure file, or --pairs FILE")
    if not paths:
        raise CommandLineError(f"{args.pairs} lists no pairs")
    return [(_read(first), _read(second)) for first, second in paths]


def _read(path: Path) -> Any:
    import ase.io

    if not os.path.isfile(path):
        raise CommandLineError(f"structure file {path} does not exist")
    try:
        return ase.io.read(path)  # the last frame: a relaxation's trajectory gives its end state
    except Exception as error:
        raise CommandLineError(f"cannot read {path}: {error}") from error


def _output(output: Path) -> Path:
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CommandLineError(f"cannot write to output folder {output}: {error}") from error
    return output


def _summary(bands: list[Any], args: argparse.Namespace, steps: int) -> dict[str, Any]:
    import numpy as np

    rows = []
    for b, neb in enumerate(bands):
        fmax = float(np.linalg.norm(neb.get_forces(), axis=1).max())  # ASE's, from the cached image results
        energies = np.array([image.get_potential_energy() for image in neb.images])
        rows.append(
            {
                "band": b,
                "images": neb.nimages,
                "forward_barrier": float(energies[1:-1].max() - energies[0]),
                "reverse_barrier": float(energies[1:-1].max() - energies[-1]),
                "highest_image": int(neb.imax),
                "energies": energies.tolist(),
                "fmax": fmax,
                "converged": fmax < args.fmax,
            }
        )
    settings = {name: getattr(args, name) for name in ("images", "model", "climb", "method", "k", "fmax")}
    return {"settings": settings, "optimizer": args.optimizer, "steps": steps, "bands": rows}


def _plot(bands: list[Any], path: Path) -> None:
    """Each band's energy along its path (images as points, ASE's force-aware fit as lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from ase.utils.forcecurve import fit_images

    figure, axes = plt.subplots(figsize=(6, 4))
    for b, neb in enumerate(bands):
        fit = fit_images(list(neb.iterimages()))
        (line,) = axes.plot(fit.fit_path, fit.fit_energies, label=f"band {b}")
        axes.plot(fit.path, fit.energies, "o", color=line.get_color())
    axes.set_xlabel("path / Å")
    axes.set_ylabel("energy relative to the initial state / eV")
    if len(bands) <= 12:
        axes.legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
