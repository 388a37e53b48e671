"""Models by name for the command line: the one table of model names, their parameters and builders.

:data:`MODELS` is the only place a command-line model name is defined: add an
entry (a :class:`ModelChoice`) and ``--model NAME``, ``--help`` and the
"which model?" message all know it. Builders import their model only when
called, so ``--help`` stays instant. Besides the table, ``--model`` takes any
ASE calculator as ``package.module:Class`` (run one system at a time on the host).
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nvalchemi_ase.models.base import Model


class CommandLineError(ValueError):
    """Bad command-line input; the message is shown to the user as is (exit code 2)."""


@dataclass(frozen=True)
class ModelChoice:
    """One ``--model`` name: what it is, its parameters (for ``--help``), and how to build it."""

    summary: str
    parameters: str
    """``--model-param`` names with defaults and units, as shown by ``--help``."""
    build: Callable[..., Model]
    """Called with the ``--model-param`` values as keyword arguments."""
    elements: Callable[[], frozenset[str]] | None = None
    """The element symbols the model has parameters for (None: any element)."""


def _lennard_jones(**parameters: Any) -> Model:
    from nvalchemi_ase.models import LennardJones

    return LennardJones(**parameters)


def _morse(**parameters: Any) -> Model:
    from nvalchemi_ase.models import Morse

    return Morse(**parameters)


def _emt(**parameters: Any) -> Model:
    from nvalchemi_ase.models import EMT

    return EMT(**parameters)


def _emt_elements() -> frozenset[str]:
    from nvalchemi_ase.models.emt_parameters import SUPPORTED_ELEMENTS

    return frozenset(SUPPORTED_ELEMENTS)


MODELS: dict[str, ModelChoice] = {
    "emt": ModelChoice(
        "effective-medium theory, equal to ase.calculators.emt.EMT (Al Cu Ag Au Ni Pd Pt H C N O)",
        "asap_cutoff=False, skin=0.5 (Å)",
        _emt,
        _emt_elements,
    ),
    "lj": ModelChoice(
        "Lennard-Jones, equal to ase.calculators.lj.LennardJones (one sigma/epsilon for every element)",
        "sigma=1.0 (Å), epsilon=1.0 (eV), rc=3*sigma (Å), ro=0.66*rc (Å), smooth=False",
        _lennard_jones,
    ),
    "morse": ModelChoice(
        "Morse, equal to ase.calculators.morse.MorsePotential",
        "epsilon=1.0 (eV), rho0=6.0, r0=1.0 (Å), rcut1=1.9 (r0), rcut2=2.7 (r0)",
        _morse,
    ),
}
"""Command-line model names. Their parameters are given as ``--model-param NAME=VALUE``."""

DEFAULT_MODEL = "emt"
"""Used when ``--model`` is not given and every element of the input is one the model has."""


def models_help() -> str:
    """The model table as plain text, for ``--help``."""
    lines = ["models (--model NAME, parameters as --model-param NAME=VALUE):"]
    for name, choice in MODELS.items():
        lines.append(f"  {name:<7} {choice.summary}")
        lines.append(f"  {'':<7} parameters: {choice.parameters}")
    lines.append(
        "  module:Class  any ASE calculator by import path, e.g. ase.calculators.emt:EMT (host, slow)"
    )
    return "\n".join(lines)


def choose_model(name: str | None, elements: set[str]) -> str:
    """The model name to use: ``name``, or the default when it covers every element, else an error."""
    if name is not None:
        return name
    default = MODELS[DEFAULT_MODEL]
    covered = default.elements() if default.elements is not None else None
    missing = sorted(elements - covered) if covered is not None else []
    if missing:
        raise CommandLineError(
            f"no --model given and the default ({DEFAULT_MODEL}) has no parameters for "
            f"{', '.join(missing)}: choose one with --model ({', '.join(MODELS)}, or module:Class)"
        )
    return DEFAULT_MODEL


def unsupported_elements(name: str, elements: set[str]) -> list[str]:
    """The elements of ``elements`` that model ``name`` has no parameters for (none for unknown ones)."""
    choice = MODELS.get(name.lower())
    if choice is None or choice.elements is None:
        return []
    return sorted(elements - choice.elements())


def parse_parameters(pairs: Sequence[str]) -> dict[str, Any]:
    """``["sigma=3.4", "smooth=True"]`` → ``{"sigma": 3.4, "smooth": True}`` (literals, else strings)."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.isidentifier():
            raise CommandLineError(f"model parameter '{pair}' is not of the form name=value")
        try:
            parameters[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            parameters[name] = text
    return parameters


def make_model(name: str, parameters: dict[str, Any]) -> Model:
    """``nvalchemi_ase.models.load(name, **parameters)``, its errors made command-line errors.

    ``load`` knows the names of :data:`MODELS`, the pretrained potentials and
    ``package.module:Class`` ASE calculators.
    """
    from nvalchemi_ase.models.registry import MissingExtraError, UnknownModelError, load

    try:
        return load(name, **parameters)
    except (UnknownModelError, MissingExtraError) as error:
        raise CommandLineError(str(error)) from error
    except (TypeError, ValueError) as error:
        raise CommandLineError(f"model '{name}' rejected its parameters {parameters}: {error}") from error
