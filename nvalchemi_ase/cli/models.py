"""Models by name for the command line: built-in ones with parameters, or any ASE calculator by path."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from nvalchemi_ase.models import EMT, ASECalculatorModel, LennardJones, Morse
from nvalchemi_ase.models.base import Model


class CommandLineError(ValueError):
    """Bad command-line input; the message is shown to the user as is (exit code 2)."""


BUILTIN_MODELS: dict[str, Callable[..., Model]] = {"lj": LennardJones, "morse": Morse, "emt": EMT}


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
    """A built-in model (``lj``, ``morse``, ``emt``) or an ASE calculator as ``package.module:Class``."""
    if name.lower() in BUILTIN_MODELS:
        try:
            return BUILTIN_MODELS[name.lower()](**parameters)
        except TypeError as error:
            raise CommandLineError(f"model '{name}': {error}") from error
    module_name, sep, attribute = name.partition(":")
    if not sep:
        module_name, _, attribute = name.rpartition(".")
    if not module_name or not attribute:
        known = ", ".join(sorted(BUILTIN_MODELS))
        raise CommandLineError(
            f"unknown model '{name}': use one of {known} or an import path like ase.calculators.emt:EMT"
        )
    try:
        calculator_class = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as error:
        raise CommandLineError(f"cannot import model '{name}': {error}") from error
    try:
        calculator_class(**parameters)  # fail now, with the user's parameters, not mid-run
    except Exception as error:
        raise CommandLineError(f"model '{name}' rejected its parameters {parameters}: {error}") from error
    return ASECalculatorModel(lambda: calculator_class(**parameters))
