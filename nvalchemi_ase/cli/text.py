"""Words on screen: counts with the right plural."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``"1 structure"``, ``"2 structures"``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
