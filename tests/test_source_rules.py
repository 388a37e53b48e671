"""Rules of the package's source that a reader cannot see from results alone."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nvalchemi_ase"


def test_per_system_values_reach_atoms_through_segment_broadcast():
    """``values[batch_idx]`` starts an OpenMP region on a CPU whose spinning workers slow the next kernel."""
    indexing = re.compile(r"\[(?:self\.|batch\.)?batch_idx\]")
    offenders = [
        f"{path.relative_to(PACKAGE)}:{number}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if indexing.search(line)
    ]
    assert offenders == []
