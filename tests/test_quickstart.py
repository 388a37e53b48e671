"""The quick start's command-line block runs as written, top to bottom, in an empty folder."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

QUICKSTART = Path(__file__).resolve().parent.parent / "docs" / "quickstart.md"


def _commands() -> list[str]:
    block = re.search(r"## 1\. The command line.*?```bash\n(.*?)```", QUICKSTART.read_text(), flags=re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


@pytest.mark.slow
def test_the_command_line_block_runs_as_written(tmp_path):
    scripts = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": scripts + os.pathsep + os.environ.get("PATH", "")}
    commands = _commands()
    assert commands[-1].startswith("ase gui")  # opens a window: the only line not run
    for command in commands[:-1]:
        done = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["finished"] == 32
    assert json.loads((tmp_path / "results" / "summary.json").read_text())["finished"] == 4
    assert (tmp_path / "results" / "energy.png").exists()
    assert (tmp_path / commands[-1].split()[-1]).exists()  # what the last line opens
