"""The README's commands stay true: CI runs its test command, and its examples run."""

from __future__ import annotations

import re
from pathlib import Path

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
    from ase.build import bulk

    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 3
    list_of_atoms = [bulk("Ar", "fcc", a=5.26, cubic=True), bulk("Ar", "fcc", a=5.3) * (2, 1, 1)]
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        namespace = {"list_of_atoms": list_of_atoms}
        exec(compile(block, "README.md", "exec"), namespace)
