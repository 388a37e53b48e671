"""Progress of a run: one bar over fused steps with per-stage counts, or plain lines off a terminal.

The counts come from one device→host copy of ``batch.status``, made only when
the display is due (a few times a second on a terminal, every few seconds
otherwise), so the step loop itself never waits for the host.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from nvalchemi_ase.dynamics.base import DynamicsStage
from nvalchemi_ase.hooks.protocol import HookContext

TERMINAL_INTERVAL = 0.25
"""Seconds between bar refreshes on a terminal."""
PLAIN_INTERVAL = 5.0
"""Seconds between plain progress lines when the output is not a terminal."""


class Progress:
    """Shows the run's progress; ``hook`` is the fused stage's AFTER_STEP hook that feeds it.

    ``stage_names`` are the sub-stages in order (``["relaxing", "in MD"]``);
    ``total`` is the number of structures that run, ``set_aside`` those that do not.
    """

    def __init__(
        self,
        total: int,
        stage_names: list[str],
        set_aside: int = 0,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.total = total
        self.stage_names = stage_names
        self.set_aside = set_aside
        self.done = 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.terminal = self.stream.isatty()
        self.interval = TERMINAL_INTERVAL if self.terminal else PLAIN_INTERVAL
        self.start = time.monotonic()
        self.last = self.start
        self.bar: Any = None
        if not quiet and self.terminal:
            from tqdm import tqdm

            self.bar = tqdm(total=None, unit="step", desc="steps", file=self.stream, dynamic_ncols=True)
        self.hook = _ProgressHook(self)

    def finished(self, total_done: int) -> None:
        """Called with the number of finished systems whenever it grows."""
        self.done = total_done

    def update(self, step: int, counts: list[int]) -> None:
        text = self.describe(counts)
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()
        elif not self.quiet:
            print(
                f"step {step}: {text} ({time.monotonic() - self.start:.0f} s)", file=self.stream, flush=True
            )

    def describe(self, counts: list[int]) -> str:
        parts = [f"{n} {name}" for n, name in zip(counts, self.stage_names, strict=False)]
        parts.append(f"{self.done}/{self.total} done")
        if self.set_aside:
            parts.append(f"{self.set_aside} set aside")
        return ", ".join(parts)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _ProgressHook:
    """AFTER_STEP on the fused stage: when the display is due, one copy of the status counts."""

    stage = DynamicsStage.AFTER_STEP
    frequency = 1

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    def state_dict(self) -> dict[str, Any]:
        """Nothing: a display is no part of a run's state (a checkpoint leaves it out)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        now = time.monotonic()
        if self.progress.quiet or now - self.progress.last < self.progress.interval:
            return
        self.progress.last = now
        stages = len(self.progress.stage_names)
        counts = ctx.batch.status.bincount(minlength=stages + 1)[:stages].tolist()  # the one sync
        self.progress.update(ctx.step_count + 1, counts)
