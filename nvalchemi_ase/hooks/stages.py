"""``DynamicsStage``: the nine hook-firing points of a dynamics step.

It lives in the hook core so that hooks can name their stages without
importing the engines; ``nvalchemi_ase.dynamics.base.DynamicsStage`` is the
same class (the import path the engines' users know).
"""

from __future__ import annotations

import enum


class DynamicsStage(enum.IntEnum):
    """The nine hook-firing points of a dynamics step, in firing order."""

    BEFORE_STEP = 0
    BEFORE_PRE_UPDATE = 1
    AFTER_PRE_UPDATE = 2
    BEFORE_COMPUTE = 3
    AFTER_COMPUTE = 4
    BEFORE_POST_UPDATE = 5
    AFTER_POST_UPDATE = 6
    AFTER_STEP = 7
    ON_CONVERGE = 8
