"""Nothing in the repository reads a path outside it: a user's clone has nothing beside it.

Every ``Path(__file__)...parents[N]`` / ``.parent.parent`` climb in the tests,
examples, benchmarks, docs and package must stay inside the repository root,
and no file names a folder beside the clone (a sibling ``shared`` folder) or an absolute
path on the machine it was written on.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("tests", "examples", "benchmarks", "docs", "nvalchemi_ase", ".ci")
CLIMB = re.compile(r"__file__\)\s*(?:\.resolve\(\))?((?:\.parent(?!s))+)?(?:\.parents\[(\d+)\])?")
OUTSIDE = re.compile(r"\.\./shared|shared/(?:spec|reference|DESIGN|STYLE)|(?<![\w.])/wor[k]/")


def _files() -> list[Path]:
    found = [ROOT / "README.md", ROOT / "pyproject.toml"]
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and path.suffix in {".py", ".md", ".rst", ".toml", ".cfg", ".txt", ""}:
                if "_build" not in path.parts and "__pycache__" not in path.parts:
                    found.append(path)
    return found


def _climbs(text: str) -> list[int]:
    """How many folders above the file's own folder each ``__file__`` climb in ``text`` reaches."""
    levels = []
    for match in CLIMB.finditer(text):
        parents, index = match.group(1), match.group(2)
        up = (parents or "").count(".parent") + (int(index) + 1 if index is not None else 0)
        if up:
            levels.append(up - 1)  # the first step up is the file's own folder
    return levels


def test_the_climb_pattern_sees_both_spellings():
    text = 'A = Path(FILE).resolve().parents[2]\nB = Path(FILE).parent.parent / "x"\n'
    text = text.replace("FILE", "__" + "file__")  # spelled apart, so this file itself does not climb
    assert _climbs(text) == [2, 1]


def test_no_file_reads_outside_the_repository():
    offenders = []
    for path in _files():
        depth = len(path.relative_to(ROOT).parts) - 1  # folders between the root and the file
        text = path.read_text(errors="replace")
        too_far = [up for up in _climbs(text) if up > depth]
        named = OUTSIDE.findall(text)
        if too_far or named:
            offenders.append(f"{path.relative_to(ROOT)}: climbs {too_far} above its folder, names {named}")
    assert offenders == []
