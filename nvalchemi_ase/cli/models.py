"""Models by name for the command line: whatever ``nvalchemi_ase.models.load`` knows, with parameters."""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from nvalchemi_ase.models.base import Model
from nvalchemi_ase.models.registry import MissingExtraError, UnknownModelError, load


class CommandLineError(ValueError):
    """Bad command-line input; the message is shown to the user as is (exit code 2)."""


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
    """``nvalchemi_ase.models.load(name, **parameters)``, its errors made command-line errors."""
    try:
        return load(name, **parameters)
    except (UnknownModelError, MissingExtraError) as error:
        raise CommandLineError(str(error)) from error
    except (TypeError, ValueError) as error:
        raise CommandLineError(f"model '{name}' rejected its parameters {parameters}: {error}") from error
