"""``nvalchemi-ase plot LOG``: per-atom energy, temperature, fmax and systems against step, as PNG files.

Relaxation and MD rows (the log's ``status``: 0 relaxing, 1 in MD; with one
stage, its rows are 0) are drawn in separate panels: their scales differ and a
system that moves from one to the other is not a jump. Energies are per atom
(the ``atoms`` column), so systems of different sizes share a scale. fmax is
drawn for relaxing systems against the target (``--fmax``, else the run's
``summary.json``). ``systems.png`` counts the systems in each stage at each
logged step.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from nvalchemi_ase.cli.models import CommandLineError
from nvalchemi_ase.cli.text import plural

COLUMNS = ("step", "system", "status", "energy", "fmax", "temperature")
"""Columns every log has (``atoms`` too, from runs that log it: then energies are per atom)."""
PER_SYSTEM_LIMIT = 12
"""Up to this many systems get a line each by default; more are shown as median and 10-90 % band."""
LEGEND_LIMIT = 10
"""Per-system plots with more systems than this colour lines by system index (a colour bar), no legend."""


def read_log(path: Path) -> dict[str, np.ndarray]:
    """The csv log as columns (``atoms`` is all ones when the log has no such column)."""
    if not path.is_file():
        raise CommandLineError(f"log file {path} does not exist")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        names = set(reader.fieldnames or ())
        missing = set(COLUMNS) - names
        if missing:
            raise CommandLineError(
                f"{path} is not a nvalchemi-ase csv log: missing columns {sorted(missing)}"
            )
        wanted = [*COLUMNS, *(["atoms"] if "atoms" in names else [])]
        rows = [[float(row[c]) for c in wanted] for row in reader]
    if not rows:
        raise CommandLineError(f"{path} has no rows")
    table = np.asarray(rows)
    data = {name: table[:, k] for k, name in enumerate(wanted)}
    data.setdefault("atoms", np.ones(len(rows)))
    return data


def _stages(summary: dict[str, Any] | None, data: dict[str, np.ndarray]) -> list[tuple[int, str]]:
    settings = (summary or {}).get("settings", {})
    relax, md = settings.get("relax", True), settings.get("md", True)
    names = [name for name, on in (("relaxation", relax), ("MD", md)) if on]
    present = sorted({int(s) for s in np.unique(data["status"])})
    return [(k, names[k] if k < len(names) else f"stage {k}") for k in present if k < max(len(names), 1)]


def plot_log(
    path: Path, output: Path | None = None, aggregate: bool | None = None, fmax: float | None = None
) -> list[Path]:
    """Write energy, temperature, fmax and systems PNGs beside the log (or in ``output``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = read_log(path)
    summary_path = path.parent / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if fmax is None and summary is not None:
        fmax = summary.get("settings", {}).get("fmax")
    per_atom = "atoms" in _header(path)
    folder = output or path.parent
    folder.mkdir(parents=True, exist_ok=True)
    systems = np.unique(data["system"])
    aggregate = len(systems) > PER_SYSTEM_LIMIT if aggregate is None else aggregate
    stages = _stages(summary, data)
    values = {
        "energy": data["energy"] / data["atoms"],
        "temperature": data["temperature"],
        "fmax": data["fmax"],
    }
    labels = {
        "energy": "energy per atom / eV" if per_atom else "energy / eV",
        "temperature": "temperature / K",
        "fmax": "fmax / (eV/Å)",
    }
    written = []
    for quantity, label in labels.items():
        shown = [(k, name) for k, name in stages if not (quantity == "fmax" and name == "MD")] or stages
        figure, axes = plt.subplots(1, len(shown), figsize=(6 * len(shown), 4.5), squeeze=False)
        for ax, (status, name) in zip(axes[0], shown, strict=True):
            rows = data["status"] == status
            _draw(ax, data["step"][rows], data["system"][rows], values[quantity][rows], aggregate, figure)
            if quantity == "fmax":
                ax.set_yscale("log")
                if fmax is not None:
                    ax.axhline(fmax, color="k", linestyle="--", linewidth=1, label=f"target {fmax:g}")
                    ax.legend(fontsize="small")
            ax.set_xlabel("step")
            ax.set_ylabel(label)
            ax.set_title(f"{name}: {plural(len(np.unique(data['system'][rows])), 'system')}")
        figure.suptitle(f"{quantity} ({path.name})")
        figure.tight_layout()
        written.append(_save(figure, folder / f"{quantity}.png", plt))
    figure, ax = plt.subplots(figsize=(7, 4.5))
    for status, name in stages:
        steps, counts = np.unique(data["step"][data["status"] == status], return_counts=True)
        ax.step(steps, counts, where="post", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("systems")
    ax.set_title(f"systems in each stage ({plural(len(systems), 'system')} in all)")
    ax.legend(fontsize="small")
    figure.tight_layout()
    written.append(_save(figure, folder / "systems.png", plt))
    return written


def _header(path: Path) -> list[str]:
    with path.open(newline="") as handle:
        return next(csv.reader(handle), [])


def _save(figure: Any, target: Path, plt: Any) -> Path:
    figure.savefig(target, dpi=120)
    plt.close(figure)
    return target


def _draw(
    ax: Any, steps: np.ndarray, systems: np.ndarray, values: np.ndarray, aggregate: bool, figure: Any
) -> None:
    if steps.size == 0:
        return
    if aggregate:
        _aggregated(ax, steps, values)
        return
    ids = np.unique(systems)
    if len(ids) <= LEGEND_LIMIT:
        for system in ids:
            rows = systems == system
            ax.plot(steps[rows], values[rows], label=f"system {int(system)}", linewidth=1.2)
        ax.legend(fontsize="small", ncol=2)
        return
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    norm = mpl.colors.Normalize(vmin=ids.min(), vmax=ids.max())
    for system in ids:
        rows = systems == system
        ax.plot(steps[rows], values[rows], color=cmap(norm(system)), linewidth=0.8)
    figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label="system")


def _aggregated(ax: Any, steps: np.ndarray, values: np.ndarray) -> None:
    by_step: dict[float, list[float]] = defaultdict(list)
    for step, value in zip(steps, values, strict=True):
        if np.isfinite(value):
            by_step[step].append(value)
    xs = np.array(sorted(by_step))
    groups = [np.asarray(by_step[s]) for s in xs]
    ax.plot(xs, [np.median(g) for g in groups], color="C0", label="median over systems")
    ax.fill_between(
        xs,
        [np.percentile(g, 10) for g in groups],
        [np.percentile(g, 90) for g in groups],
        color="C0",
        alpha=0.25,
        label="10-90 %",
    )
    ax.legend(fontsize="small")
