"""``nvalchemi-ase plot LOG``: energy, temperature and fmax against step, as PNG files."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import numpy as np

from nvalchemi_ase.cli.models import CommandLineError

QUANTITIES = {"energy": "energy / eV", "temperature": "temperature / K", "fmax": "fmax / (eV/Å)"}
PER_SYSTEM_LIMIT = 12
"""Up to this many systems get a line each; more are shown as mean and 10-90 % band."""


def read_log(path: Path) -> dict[int, dict[str, np.ndarray]]:
    """The csv log as ``{system: {column: values}}``, rows sorted by step."""
    if not path.is_file():
        raise CommandLineError(f"log file {path} does not exist")
    rows: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = {"step", "system", *QUANTITIES} - set(reader.fieldnames or ())
        if missing:
            raise CommandLineError(
                f"{path} is not a nvalchemi-ase csv log: missing columns {sorted(missing)}"
            )
        for row in reader:
            system = int(float(row["system"]))
            for column in ("step", *QUANTITIES):
                rows[system][column].append(float(row[column]))
    if not rows:
        raise CommandLineError(f"{path} has no rows")
    return {s: {c: np.asarray(v) for c, v in columns.items()} for s, columns in rows.items()}


def plot_log(path: Path, output: Path | None = None, aggregate: bool | None = None) -> list[Path]:
    """Write ``energy.png``, ``temperature.png`` and ``fmax.png`` next to the log (or in ``output``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_log(path)
    folder = output or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    aggregate = len(data) > PER_SYSTEM_LIMIT if aggregate is None else aggregate
    written = []
    for quantity, label in QUANTITIES.items():
        figure, axes = plt.subplots(figsize=(7, 4.5))
        if aggregate:
            _aggregated(axes, data, quantity)
        else:
            for system, columns in sorted(data.items()):
                axes.plot(columns["step"], columns[quantity], label=f"system {system}", linewidth=1.2)
            axes.legend(fontsize="small", ncol=2)
        if quantity == "fmax":
            axes.set_yscale("log")
        axes.set_xlabel("step")
        axes.set_ylabel(label)
        axes.set_title(f"{quantity} — {len(data)} systems ({path.name})")
        figure.tight_layout()
        target = folder / f"{quantity}.png"
        figure.savefig(target, dpi=120)
        plt.close(figure)
        written.append(target)
    return written


def _aggregated(axes, data: dict[int, dict[str, np.ndarray]], quantity: str) -> None:
    by_step: dict[float, list[float]] = defaultdict(list)
    for columns in data.values():
        for step, value in zip(columns["step"], columns[quantity], strict=True):
            if np.isfinite(value):
                by_step[step].append(value)
    steps = np.array(sorted(by_step))
    values = [np.asarray(by_step[s]) for s in steps]
    mean = np.array([v.mean() for v in values])
    low = np.array([np.percentile(v, 10) for v in values])
    high = np.array([np.percentile(v, 90) for v in values])
    axes.plot(steps, mean, color="C0", label="mean over systems")
    axes.fill_between(steps, low, high, color="C0", alpha=0.25, label="10-90 %")
    axes.legend(fontsize="small")
