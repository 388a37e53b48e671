"""``nvalchemi-ase``: relax and run MD on a file of structures without writing Python.

Commands: ``run INPUT`` (any ``ase.io`` format, every frame), ``demo`` (the same
on a built-in set), ``plot LOG`` (PNG plots of a run's csv log), ``neb INITIAL
FINAL`` (barriers, :mod:`nvalchemi_ase.cli.neb`), ``resume OUTPUT_DIR`` (continue
a stopped run, :mod:`nvalchemi_ase.cli.scaling`).

Exit codes: 0 done; 1 the run failed; 2 bad input (unreadable file, unknown
model, bad option, unwritable folder), one line on stderr, before anything is
written; 130 interrupted (Ctrl-C: finished systems are in ``final.extxyz`` and
``summary.json``); 143 terminated by SIGTERM after writing a checkpoint
(``--checkpoint-every``).

Only the standard library is imported here: torch, ASE and the kernels load
when a command needs them, so ``--help`` and ``--version`` answer at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nvalchemi_ase import __version__
from nvalchemi_ase.cli import neb
from nvalchemi_ase.cli.heap import SetUpHeap
from nvalchemi_ase.cli.models import DEFAULT_MODEL, MODELS, CommandLineError, models_help

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143

DESCRIPTION = "Relax and run MD on many ASE structures at once, batched on one device."
EXIT_CODES = (
    "exit codes: 0 done; 1 the run failed; 2 bad input (one line on stderr, nothing written);\n"
    "130 interrupted (finished systems are in final.extxyz and summary.json);\n"
    "143 terminated by SIGTERM after a checkpoint (--checkpoint-every; continue with 'resume')"
)
ENSEMBLE_NAMES = ("nve", "langevin", "langevin-baoab", "berendsen", "bussi", "nose-hoover", "andersen")
"""Kept equal to ``pipeline.ENSEMBLES`` (a test checks), so ``--help`` needs no torch."""


def _run_options(parser: argparse.ArgumentParser, default_output: str, default_model: str) -> None:
    model = parser.add_argument_group("model")
    model.add_argument(
        "--model",
        default=None,
        help=f"{', '.join(MODELS)}, a pretrained potential ('--model ?' lists them) "
        f"or an ASE calculator as module:Class ({default_model})",
    )
    model.add_argument(
        "--model-param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="model parameter, repeatable (see the model list below)",
    )
    job = parser.add_argument_group("job")
    job.add_argument("--no-relax", dest="relax", action="store_false", help="skip the FIRE relaxation")
    job.add_argument("--no-md", dest="md", action="store_false", help="skip the molecular dynamics")
    job.add_argument("--fmax", type=float, default=0.05, help="relaxation target, eV/Å (default 0.05)")
    job.add_argument(
        "--relax-steps", type=int, default=500, help="relaxation budget per system (default 500)"
    )
    job.add_argument(
        "--relax-cell", action="store_true", help="relax the cells too (FIRE with a Frechet cell filter)"
    )
    job.add_argument(
        "--pressure", type=float, default=None, help="GPa, the pressure --relax-cell relaxes to (default 0)"
    )
    job.add_argument(
        "--ensemble", choices=ENSEMBLE_NAMES, default="langevin", help="MD ensemble (default langevin)"
    )
    job.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    job.add_argument("--timestep", type=float, default=2.0, help="fs (default 2)")
    job.add_argument("--steps", type=int, default=200, help="MD steps per system (default 200)")
    job.add_argument("--friction", type=float, default=0.01, help="Langevin friction, 1/fs (default 0.01)")
    job.add_argument("--tau", type=float, default=100.0, help="thermostat time constant, fs (default 100)")
    job.add_argument(
        "--andersen-prob", type=float, default=0.01, help="Andersen collision probability (default 0.01)"
    )
    job.add_argument(
        "--seed", type=int, default=0, help="seed of the initial velocities and thermostat noise (default 0)"
    )
    job.add_argument(
        "--strict",
        action="store_true",
        help="stop (exit 2) instead of setting aside structures that cannot run",
    )
    machine = parser.add_argument_group("machine")
    machine.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    machine.add_argument(
        "--dtype", choices=["float64", "float32"], default="float64", help="(default float64)"
    )
    machine.add_argument(
        "--max-systems", type=int, default=64, help="systems on the device at once (default 64)"
    )
    machine.add_argument(
        "--max-atoms", type=int, default=None, help="atoms on the device at once (default unlimited)"
    )
    out = parser.add_argument_group("output")
    out.add_argument(
        "--output", "-o", default=default_output, help=f"output folder (default {default_output})"
    )
    out.add_argument("--log-interval", type=int, default=10, help="steps between csv log rows (default 10)")
    out.add_argument(
        "--trajectory-interval", type=int, default=10, help="steps between trajectory frames (default 10)"
    )
    out.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    scale = parser.add_argument_group("scale-out and checkpoints")
    where = scale.add_mutually_exclusive_group()
    where.add_argument(
        "--workers", type=int, default=None, metavar="N", help="run on a local Dask cluster of N processes"
    )
    where.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="run on the Dask cluster at ADDRESS (tcp://host:port)",
    )
    scale.add_argument(
        "--chunk-size", type=int, default=16, metavar="N", help="structures per Dask task (default 16)"
    )
    scale.add_argument(
        "--idle-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="runs on Dask: fail (resumably) when for this long no chunk runs or finishes "
        "(default 300; 0 waits for ever, e.g. for workers queued on a batch system)",
    )
    scale.add_argument(
        "--checkpoint-every",
        type=int,
        default=None,
        metavar="K",
        help="one-process runs: a checkpoint every K fused steps and on SIGTERM (then exit 143); "
        "see 'resume'",
    )


def parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    main = argparse.ArgumentParser(
        prog="nvalchemi-ase", description=DESCRIPTION, epilog=EXIT_CODES, formatter_class=formatter
    )
    main.add_argument("--version", action="version", version=f"nvalchemi-ase {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="{run,demo,plot,neb,resume}")
    epilog = f"{models_help()}\n\n{EXIT_CODES}"
    run_parser = commands.add_parser(
        "run",
        help="relax then run MD on every structure of a file",
        description="Relax (FIRE) then run MD on every structure of a file, batched.",
        epilog=epilog,
        formatter_class=formatter,
    )
    run_parser.add_argument("input", help="structure file (every frame is read; any ase.io format)")
    run_parser.add_argument("--format", default=None, help="ase.io format, when the extension does not tell")
    _run_options(run_parser, "nvalchemi-ase-run", f"default {DEFAULT_MODEL} when it has every element")
    demo_parser = commands.add_parser(
        "demo",
        help="the same on a built-in set of rattled copper structures",
        description="Relax then run MD on a built-in set of rattled copper structures (4 to 108 atoms).",
        epilog=epilog,
        formatter_class=formatter,
    )
    demo_parser.add_argument("--structures", type=int, default=32, help="how many (default 32)")
    _run_options(demo_parser, "nvalchemi-ase-demo", f"default {DEFAULT_MODEL}")
    plot_parser = commands.add_parser(
        "plot",
        help="PNG plots of a run's log.csv",
        description="PNG plots of per-atom energy, temperature and fmax against step from a run's log.csv.",
    )
    plot_parser.add_argument("log", help="log.csv of a run")
    plot_parser.add_argument(
        "--output", "-o", default=None, help="folder for the PNGs (default: beside the log)"
    )
    plot_parser.add_argument(
        "--fmax", type=float, default=None, help="relaxation target to draw on the fmax plot (eV/Å)"
    )
    group = plot_parser.add_mutually_exclusive_group()
    group.add_argument(
        "--per-system", dest="aggregate", action="store_false", default=None, help="one line per system"
    )
    group.add_argument("--aggregate", dest="aggregate", action="store_true", help="median and 10-90 %% band")
    neb.add_command(commands)
    resume_parser = commands.add_parser(
        "resume",
        help="continue a stopped run from its output folder",
        description="Continue a run that was stopped (killed, terminated, interrupted) with the options "
        "it recorded in OUTPUT_DIR/run.json: from its checkpoint (--checkpoint-every), or, for a "
        "distributed run, with the structures not yet done. A run without either starts again.",
        epilog=EXIT_CODES,
        formatter_class=formatter,
    )
    resume_parser.add_argument("output_dir", help="the output folder of the run")
    resume_parser.add_argument("--quiet", "-q", action="store_true", help="no progress display")
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Idle OpenMP threads sleep rather than spin: on a few shared cores, spinning
    # threads take the time the one busy thread needs (set before torch loads).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        if args.command == "plot":
            from nvalchemi_ase.cli.plot import plot_log

            output = Path(args.output) if args.output else None
            for path in plot_log(Path(args.log), output, args.aggregate, fmax=args.fmax):
                print(f"wrote {path}")
            return EXIT_OK
        if args.command == "neb":
            with SetUpHeap() as heap:
                return neb.run_command(args, heap)
        if args.command == "resume":
            from nvalchemi_ase.cli.scaling import resumed_options

            args = resumed_options(args)
        with SetUpHeap() as heap:
            return _run_command(args, heap)
    except CommandLineError as error:
        print(f"nvalchemi-ase: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt as interrupt:
        _report_interrupt(interrupt)
        return EXIT_INTERRUPTED


def _report_interrupt(interrupt: KeyboardInterrupt) -> None:
    summary = getattr(interrupt, "summary", None)
    if summary is None:
        print("\nnvalchemi-ase: interrupted before the run started; nothing was written.", file=sys.stderr)
        return
    from nvalchemi_ase.cli.text import plural

    print(
        f"\nnvalchemi-ase: interrupted. Written: {plural(summary.finished, 'finished system')} "
        f"in {summary.outputs['final structures']}, "
        f"the summary ({len(summary.unfinished)} unfinished) in {summary.outputs['summary']}, "
        f"trajectories so far in {summary.outputs['trajectories']}, "
        f"the log in {summary.outputs['log']}.",
        file=sys.stderr,
    )


def _run_command(args: argparse.Namespace, heap: SetUpHeap) -> int:
    from nvalchemi_ase.cli.checks import check_options, check_sizes, set_aside
    from nvalchemi_ase.cli.models import choose_model, make_model, parse_parameters

    check_options(args)
    if args.command == "demo":
        if args.structures < 1:
            raise CommandLineError(f"--structures must be at least 1, got {args.structures}")
        from nvalchemi_ase.cli.demo import demo_structures

        structures = demo_structures(args.structures)
    else:
        structures = _read(args.input, args.format)
    elements = {symbol for atoms in structures for symbol in atoms.get_chemical_symbols()}
    name = choose_model(args.model, elements)
    parameters = parse_parameters(args.model_param)
    check_sizes(structures, args.max_atoms)
    aside = set_aside(structures, name.lower())
    if aside and (args.strict or len(aside) == len(structures)):
        why = "--strict" if args.strict else "no structure can run"
        raise CommandLineError(
            f"{why}: {aside[0].text()}" + (f" (and {len(aside) - 1} more)" if len(aside) > 1 else "")
        )
    model = make_model(name, parameters)
    from nvalchemi_ase.cli.scaling import connect

    # the cluster first: a scheduler that cannot be reached leaves the output folder as it was
    with connect(args) as client:
        heap.settle()
        return _run_connected(args, client, structures, aside, name, parameters, model)


def _run_connected(
    args: argparse.Namespace,
    client: Any,
    structures: list,
    aside: list,
    name: str,
    parameters: dict[str, Any],
    model: Any,
) -> int:
    """The run itself, on ``client``'s cluster (``None``: in this process)."""
    from nvalchemi_ase.cli.pipeline import stage_names
    from nvalchemi_ase.cli.progress import Progress
    from nvalchemi_ase.cli.scaling import execute, record_run
    from nvalchemi_ase.cli.text import plural
    from nvalchemi_ase.dynamics.checkpoint import TerminatedAfterCheckpoint

    settings = _settings(args)
    choice = MODELS.get(name.lower())
    defaults = f"defaults: {choice.parameters}" if choice is not None else "its defaults"
    shown = ", ".join(f"{k}={v}" for k, v in parameters.items()) or defaults
    print(
        f"{plural(len(structures), 'structure')}, model {name} ({shown}), output in {settings.output}",
        flush=True,
    )
    for entry in aside:
        print(f"set aside: {entry.text()}", flush=True)
    progress = Progress(len(structures) - len(aside), stage_names(settings), len(aside), quiet=args.quiet)
    record_run(args, settings.output)
    try:
        summary = execute(args, client, structures, aside, name, parameters, model, settings, progress)
    except RuntimeError as error:
        print(f"nvalchemi-ase: the run failed: {error}", file=sys.stderr)
        return EXIT_FAILED
    except TerminatedAfterCheckpoint as stop:
        print(
            f"nvalchemi-ase: terminated; checkpoint written to {stop.path}. "
            f"Continue with:  nvalchemi-ase resume {settings.output}",
            file=sys.stderr,
        )
        return EXIT_TERMINATED
    print(summary.text())
    if summary.finished:
        first = summary_first(summary)
        print(
            f"open them with:  ase gui {settings.output / 'trajectories'}/system_{first:05d}.traj   "
            f"(or ase gui {settings.output / 'final.extxyz'})"
        )
        print(f"plot the log with:  nvalchemi-ase plot {settings.output / 'log.csv'}")
    return EXIT_OK


def summary_first(summary: Any) -> int:
    """The first structure that ran (its trajectory is the one to open)."""
    skipped = {entry["index"] for entry in summary.set_aside}
    return next(k for k in range(summary.systems) if k not in skipped)


def _read(path: str, format: str | None) -> list:
    if not os.path.isfile(path):
        raise CommandLineError(f"input file {path} does not exist")
    import ase.io

    try:
        frames = ase.io.read(path, index=":", format=format)
    except Exception as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CommandLineError(f"cannot read {path}: {message}") from error
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        raise CommandLineError(f"{path} holds no structures")
    return frames


def _settings(args: argparse.Namespace) -> Any:
    from nvalchemi_ase.cli.pipeline import Settings

    if args.relax_cell and not args.relax:
        raise CommandLineError("--relax-cell relaxes the cells in the relaxation, which --no-relax skips")
    if args.pressure is not None and not args.relax_cell:
        raise CommandLineError("--pressure applies to --relax-cell; add --relax-cell")
    output = Path(args.output)
    try:
        output.mkdir(parents=True, exist_ok=True)
        probe = output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as error:
        raise CommandLineError(f"cannot write to output folder {output}: {error}") from error
    return Settings(
        output=output,
        relax=args.relax,
        md=args.md,
        fmax=args.fmax,
        relax_steps=args.relax_steps,
        relax_cell=args.relax_cell,
        pressure=0.0 if args.pressure is None else args.pressure,
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
