"""``nvalchemi-ase``: relax and run MD on a file of structures without writing Python.

Commands: ``run INPUT`` (any ``ase.io`` format, every frame), ``demo`` (the same
on a built-in set), ``plot LOG`` (PNG plots of a run's csv log), ``neb INITIAL
FINAL`` (barriers, :mod:`nvalchemi_ase.cli.neb`).

Exit codes: 0 done; 1 the run failed (e.g. non-finite forces); 2 bad input
(unreadable file, unknown model, bad option, unwritable folder); 130
interrupted (Ctrl-C: the files written so far stay readable).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import ase.io

from nvalchemi_ase.cli import neb
from nvalchemi_ase.cli.demo import DEFAULT_MODEL, demo_structures
from nvalchemi_ase.cli.models import CommandLineError, make_model, parse_parameters
from nvalchemi_ase.cli.pipeline import ENSEMBLES, Settings, run
from nvalchemi_ase.cli.plot import plot_log

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _run_options(parser: argparse.ArgumentParser, default_output: str) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help="a name nvalchemi_ase.models.load knows (lj, morse, emt, 7net-0, chgnet, mace:FILE, ...; "
        "'--model ?' lists them) or an ASE calculator as module:Class",
    )
    model.add_argument(
        "--model-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="model parameter (repeatable)",
    )
    job = parser.add_argument_group("job")
    job.add_argument("--no-relax", dest="relax", action="store_false", help="skip the FIRE relaxation")
    job.add_argument("--no-md", dest="md", action="store_false", help="skip the molecular dynamics")
    job.add_argument("--fmax", type=float, default=0.05, help="relaxation target, eV/Å (default 0.05)")
    job.add_argument(
        "--relax-steps", type=int, default=500, help="relaxation budget per system (default 500)"
    )
    job.add_argument(
        "--ensemble", choices=sorted(ENSEMBLES), default="langevin", help="MD ensemble (default langevin)"
    )
    job.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    job.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    job.add_argument("--steps", type=int, default=200, help="MD steps per system (default 200)")
    job.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    job.add_argument("--tau", type=float, default=100.0, help="thermostat time constant, fs (default 100)")
    job.add_argument(
        "--andersen-prob", type=float, default=0.01, help="Andersen collision probability (default 0.01)"
    )
    job.add_argument("--seed", type=int, default=0)
    machine = parser.add_argument_group("machine")
    machine.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    machine.add_argument("--dtype", choices=["float64", "float32"], default="float64")
    machine.add_argument(
        "--max-systems", type=int, default=64, help="systems on the device at once (default 64)"
    )
    machine.add_argument("--max-atoms", type=int, default=None, help="atoms on the device at once")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output", "-o", default=default_output, help=f"output folder (default {default_output})"
    )
    out.add_argument("--log-interval", type=int, default=10, help="steps between csv log rows (default 10)")
    out.add_argument(
        "--trajectory-interval", type=int, default=10, help="steps between trajectory frames (default 10)"
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress bar")


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="nvalchemi-ase", description=__doc__.split("\n\n")[0])
    commands = main.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="relax then MD every structure of a file")
    run_parser.add_argument("input", help="structure file (every frame is read; any ase.io format)")
    run_parser.add_argument("--format", default=None, help="ase.io format, when the extension does not tell")
    _run_options(run_parser, "nvalchemi-ase-run")
    demo_parser = commands.add_parser("demo", help="the same on a built-in set of a few dozen structures")
    demo_parser.add_argument("--structures", type=int, default=32, help="how many (default 32)")
    _run_options(demo_parser, "nvalchemi-ase-demo")
    plot_parser = commands.add_parser(
        "plot", help="PNG plots of energy, temperature and fmax from a run's log.csv"
    )
    plot_parser.add_argument("log", help="log.csv of a run")
    plot_parser.add_argument(
        "--output", "-o", default=None, help="folder for the PNGs (default: beside the log)"
    )
    group = plot_parser.add_mutually_exclusive_group()
    group.add_argument(
        "--per-system", dest="aggregate", action="store_false", default=None, help="one line per system"
    )
    group.add_argument("--aggregate", dest="aggregate", action="store_true", help="mean and 10-90 %% band")
    neb.add_command(commands)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "plot":
            for path in plot_log(Path(args.log), Path(args.output) if args.output else None, args.aggregate):
                print(f"wrote {path}")
            return EXIT_OK
        if args.command == "neb":
            return neb.run_command(args)
        return _run_command(args)
    except CommandLineError as error:
        print(f"nvalchemi-ase: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(
            "\nnvalchemi-ase: interrupted; the files written so far are complete and readable.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def _run_command(args: argparse.Namespace) -> int:
    if args.command == "demo":
        structures = demo_structures(args.structures)
        name = args.model or DEFAULT_MODEL
        parameters = parse_parameters(args.model_param)
    else:
        structures = _read(args.input, args.format)
        name = args.model or "lj"
        parameters = parse_parameters(args.model_param)
    model = make_model(name, parameters)
    settings = _settings(args)
    progress = _progress(len(structures), quiet=args.quiet)
    print(
        f"{len(structures)} structures, model {name}{f' {parameters}' if parameters else ''}, "
        f"output in {settings.output}",
        flush=True,
    )
    try:
        summary = run(structures, model, settings, on_finish=progress.finished)
    except RuntimeError as error:
        print(f"nvalchemi-ase: the run failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        progress.close()
    print(summary.text())
    print(
        f"open them with:  ase gui {settings.output / 'trajectories'}/system_00000.traj   "
        f"(or ase gui {settings.output / 'final.extxyz'})"
    )
    print(f"plot the log with:  nvalchemi-ase plot {settings.output / 'log.csv'}")
    return EXIT_OK


def _read(path: str, format: str | None) -> list:
    if not os.path.isfile(path):
        raise CommandLineError(f"input file {path} does not exist")
    try:
        frames = ase.io.read(path, index=":", format=format)
    except Exception as error:
        raise CommandLineError(f"cannot read {path}: {error}") from error
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise CommandLineError(f"{path} holds no structures")
    return frames


def _settings(args: argparse.Namespace) -> Settings:
    if not args.relax and not args.md:
        raise CommandLineError("--no-relax and --no-md together leave nothing to do")
    output = Path(args.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CommandLineError(f"cannot write to output folder {output}: {error}") from error
    for name in ("steps", "relax_steps", "max_systems", "log_interval", "trajectory_interval"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise CommandLineError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    return Settings(
        output=output,
        relax=args.relax,
        md=args.md,
        fmax=args.fmax,
        relax_steps=args.relax_steps,
        ensemble=args.ensemble,
        temperature=args.temperature,
        timestep=args.timestep,
        md_steps=args.steps,
        friction=args.friction,
        tau=args.tau,
        andersen_prob=args.andersen_prob,
        seed=args.seed,
        device=args.device,
        dtype=args.dtype,
        max_atoms=args.max_atoms,
        max_systems=args.max_systems,
        log_interval=args.log_interval,
        trajectory_interval=args.trajectory_interval,
    )


class _progress:
    """A tqdm bar over finished systems, shown only on a terminal."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="system", desc="done")
        self.done = 0

    def finished(self, total_done: int) -> None:
        if self.bar is not None:
            self.bar.update(total_done - self.done)
        self.done = total_done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
