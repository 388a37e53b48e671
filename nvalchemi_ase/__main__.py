"""``python -m nvalchemi_ase``: the command line."""

from __future__ import annotations

import sys

from nvalchemi_ase.cli import main

sys.exit(main())
