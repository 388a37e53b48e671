"""The README's commands stay true: CI runs its test command, and its examples run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_readme_opens_with_install_and_test_commands() -> None:
    install, test = (block.strip() for block in _bash_blocks()[:2])
    assert "pip install torch==2.13.0" in install and install.endswith("nvalchemi-ase demo")
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = _bash_blocks()[1].strip()
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert test in ci_lines


def test_python_examples_in_the_readme_run(tmp_path, monkeypatch) -> None:
    """The README's Python blocks run in order, in one namespace, as a reader would paste them."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    assert len(namespace["results"]) == 4
    assert namespace["copper"].get_potential_energy() == pytest.approx(
        _ase_emt_energy(namespace["copper"]), rel=1e-10
    )


def _ase_emt_energy(atoms) -> float:
    from ase.calculators.emt import EMT

    reference = atoms.copy()
    reference.calc = EMT()
    return reference.get_potential_energy()
