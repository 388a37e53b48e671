"""Models by name: ``load("lj")``, ``load("7net-0")``, ``load("chgnet")``, ``load("mace:my.model")``.

The one place model names live (the command line's ``--model`` reads it too).
A name maps to a *loader*, a callable that returns a batched
:class:`~nvalchemi_ase.models.Model`:

* ``load("name", **options)`` calls ``loader(**options)``;
* ``load("name:argument", **options)`` calls ``loader(argument, **options)``
  (``"mace:path/to/file.model"``, ``"7net:path/to/checkpoint.pth"``).

Other packages add their own names through the entry-point group
``nvalchemi_ase.models`` (the entry point's name is the model name, its object
the loader), or at run time with :func:`register`. A name that is none of these
but reads as ``package.module:Class`` is taken as an ASE calculator class, run
system by system on the host through :class:`~nvalchemi_ase.models.ASECalculatorModel`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from nvalchemi_ase.models.base import Model

ENTRY_POINT_GROUP = "nvalchemi_ase.models"

Loader = Callable[..., Model]


class UnknownModelError(ValueError):
    """A name :func:`load` does not know; the message lists the names it does."""


class MissingExtraError(ImportError):
    """The package a model needs is not installed; the message names the extra to install."""


@dataclass(frozen=True)
class ModelEntry:
    """A registered name: its loader, a one-line description, and the extra it needs (if any)."""

    name: str
    loader: Loader
    description: str = ""
    extra: str | None = None


_REGISTRY: dict[str, ModelEntry] = {}


def register(
    name: str, loader: Loader, *, description: str = "", extra: str | None = None, replace: bool = False
) -> None:
    """Make ``load(name)`` call ``loader``.

    Parameters
    ----------
    name
        Lower-case, no ``:`` (``"name:argument"`` passes the argument to the loader).
    loader
        ``loader(**options)`` or ``loader(argument, **options)`` returning a model.
    description
        One line shown by ``load("?")``.
    extra
        The optional extra of ``nvalchemi-ase`` that installs what the loader imports.
    replace
        Whether an existing name may be replaced (otherwise that is an error).
    """
    if not isinstance(name, str) or not name or ":" in name or name != name.lower():
        raise ValueError(f"model name must be a non-empty lower-case string without ':', got {name!r}")
    if not callable(loader):
        raise TypeError(f"loader for model '{name}' must be callable, got {type(loader).__name__}")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model name '{name}' is already registered (pass replace=True to replace it)")
    _REGISTRY[name] = ModelEntry(name, loader, description, extra)


def available() -> dict[str, ModelEntry]:
    """Every name :func:`load` knows (ours and the entry points'), sorted."""
    entries = dict(_builtin_entries())
    for point in entry_points(group=ENTRY_POINT_GROUP):
        name = point.name.lower()
        if name not in entries:
            entries[name] = ModelEntry(name, _deferred(point), f"from {point.value}")
    entries.update(_REGISTRY)
    return dict(sorted(entries.items()))


def describe() -> str:
    """The names :func:`load` knows, one per line with what they are."""
    lines = [f"  {entry.name:<20} {entry.description}" for entry in available().values()]
    lines.append(f"  {'package.module:Class':<20} any ASE calculator class, run system by system on the host")
    return "\n".join(lines)


def load(name: str, **options: Any) -> Model:
    """A batched model by name.

    Parameters
    ----------
    name
        A registered name (``load("?")`` lists them), ``"name:argument"``, or an
        ASE calculator class as ``package.module:Class``.
    **options
        Passed to the loader (for the built-ins, the model's constructor
        parameters; for the pretrained potentials, e.g. ``dtype`` and ``skin``).

    Raises
    ------
    UnknownModelError
        An unknown name (the message lists the known ones).
    MissingExtraError
        The model's package is not installed (the message names the extra).
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownModelError(
            f"model name must be a non-empty string, got {name!r}; known names:\n{describe()}"
        )
    key, sep, argument = name.strip().partition(":")
    entries = available()
    entry = entries.get(key.lower())
    if entry is not None:
        return entry.loader(argument, **options) if sep else entry.loader(**options)
    if sep and argument:
        return _ase_calculator(key, argument, options)
    raise UnknownModelError(f"unknown model '{name}'; known names:\n{describe()}")


def require(module: str, extra: str, name: str) -> Any:
    """Import ``module`` for model ``name``, or raise :class:`MissingExtraError` naming ``extra``."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise MissingExtraError(
            f"model '{name}' needs the {module.partition('.')[0]} package: "
            f"pip install 'nvalchemi-ase[{extra}]' ({error})"
        ) from error


def _ase_calculator(module_name: str, attribute: str, options: dict[str, Any]) -> Model:
    from nvalchemi_ase.models.ase_adapter import ASECalculatorModel

    try:
        calculator_class = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise UnknownModelError(
            f"unknown model '{module_name}:{attribute}' (not a registered name, and not an importable "
            f"ASE calculator: {error}); known names:\n{describe()}"
        ) from error
    calculator_class(**options)  # fail now, with the user's options, not mid-run
    return ASECalculatorModel(lambda: calculator_class(**options))


def _deferred(point: Any) -> Loader:
    def loader(*args: Any, **options: Any) -> Model:
        return point.load()(*args, **options)

    return loader


def _builtin_entries() -> dict[str, ModelEntry]:
    from nvalchemi_ase.models.emt import EMT
    from nvalchemi_ase.models.lj import LennardJones
    from nvalchemi_ase.models.morse import Morse
    from nvalchemi_ase.models.pretrained import pretrained_entries

    ours = [
        ModelEntry("lj", LennardJones, "Lennard-Jones, ase.calculators.lj.LennardJones's parameters"),
        ModelEntry("morse", Morse, "Morse, ase.calculators.morse.MorsePotential's parameters"),
        ModelEntry("emt", EMT, "EMT, equal to ase.calculators.emt.EMT"),
    ]
    return {entry.name: entry for entry in (*ours, *pretrained_entries())}
