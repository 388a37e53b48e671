"""``ProfilerHook``: NVTX ranges and wall-clock timing between the stages of a step.

At each stage from ``BEFORE_STEP`` to ``AFTER_STEP`` the hook closes the NVTX
range of the previous stage and opens ``"nvalchemi_ase/{STAGE}"``, so every
interval between consecutive stages (``pre_update``, the model call, ...) is a
named range in Nsight Systems (``nsys profile python script.py``). The timer
records the same intervals: ``time.perf_counter`` on CPU; on CUDA a
``torch.cuda.Event`` per stage whose elapsed times are resolved only in
:meth:`ProfilerHook.summary`, so timing never waits for the device.
"""

from __future__ import annotations

import math
import time

import nvtx
import torch

from nvalchemi_ase.hooks.protocol import HookContext
from nvalchemi_ase.hooks.stages import DynamicsStage

PROFILED_STAGES = tuple(s for s in DynamicsStage if s <= DynamicsStage.AFTER_STEP)
"""BEFORE_STEP ... AFTER_STEP: the eight stages of a step (ON_CONVERGE is not timed)."""
RANGE_PREFIX = "nvalchemi_ase/"

Mark = float | torch.cuda.Event


class ProfilerHook:
    """Instrument steps with NVTX ranges and per-interval wall-clock timing.

    Parameters
    ----------
    enable_nvtx
        Push/pop an NVTX range per interval (through the ``nvtx`` package).
    enable_timer
        Record the wall-clock time (s) of each interval between consecutive stages.
    frequency
        Instrument the steps with ``step_count % frequency == 0`` (whole steps).

    Notes
    -----
    Forces computed by ``run()`` before the first step are outside any step
    and are not recorded. Intervals are labelled ``"STAGE_A->STAGE_B"``.
    """

    stage = None
    stages = PROFILED_STAGES

    def __init__(self, enable_nvtx: bool = True, enable_timer: bool = True, frequency: int = 1) -> None:
        if not isinstance(enable_nvtx, bool) or not isinstance(enable_timer, bool):
            raise TypeError(
                f"enable_nvtx and enable_timer must be bools, got {enable_nvtx!r}, {enable_timer!r}"
            )
        if isinstance(frequency, bool) or not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
        self.enable_nvtx = enable_nvtx
        self.enable_timer = enable_timer
        self.frequency = frequency
        self._in_step = False
        self._range_open = False
        self._previous: tuple[DynamicsStage, Mark] | None = None
        self._samples: dict[str, list[float]] = {}
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    # ------------------------------------------------------------------ firing
    def __call__(self, ctx: HookContext, stage: DynamicsStage) -> None:
        stage = DynamicsStage(stage)
        if stage is DynamicsStage.BEFORE_STEP:
            self.close()  # a step interrupted by an exception may have left a range open
            self._in_step = True
        elif not self._in_step:
            return  # the compute before the first step is not part of a step
        last = stage is DynamicsStage.AFTER_STEP
        if self.enable_nvtx:
            self._nvtx(stage, last)
        if self.enable_timer:
            mark = self._mark(ctx.batch.device)
            if self._previous is not None:
                self._record(f"{self._previous[0].name}->{stage.name}", self._previous[1], mark)
            self._previous = None if last else (stage, mark)
        self._in_step = not last

    def _nvtx(self, stage: DynamicsStage, last: bool) -> None:
        if self._range_open:
            nvtx.pop_range()
        if not last:
            nvtx.push_range(RANGE_PREFIX + stage.name)
        self._range_open = not last

    @staticmethod
    def _mark(device: torch.device) -> Mark:
        if device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(device))
        return event

    def _record(self, label: str, start: Mark, end: Mark) -> None:
        if isinstance(start, float) and isinstance(end, float):
            self._samples.setdefault(label, []).append(end - start)
        else:
            assert isinstance(start, torch.cuda.Event) and isinstance(end, torch.cuda.Event)
            self._samples.setdefault(label, [])  # keeps labels in first-seen order
            self._pending.append((label, start, end))

    def close(self) -> None:
        """Pop an NVTX range left open and drop an unfinished interval (timings are kept)."""
        if self._range_open:
            nvtx.pop_range()
        self._range_open = False
        self._in_step = False
        self._previous = None

    # ------------------------------------------------------------------ results
    def _resolve(self) -> None:
        """Turn recorded CUDA event pairs into seconds (waits for the last event once)."""
        if not self._pending:
            return
        self._pending[-1][2].synchronize()
        for label, start, end in self._pending:
            self._samples[label].append(start.elapsed_time(end) / 1000.0)
        self._pending.clear()

    def summary(self) -> dict[str, dict[str, float]]:
        """Statistics per interval ``"STAGE_A->STAGE_B"``.

        Returns
        -------
        dict
            ``{label: {"mean_s", "std_s", "min_s", "max_s", "total_s", "count"}}``,
            times in seconds (``std_s`` the sample standard deviation, 0 for one sample).
        """
        self._resolve()
        return {label: _statistics(values) for label, values in self._samples.items() if values}

    def reset(self) -> None:
        """Forget every recorded interval."""
        self._samples.clear()
        self._pending.clear()
        self._previous = None

    def report(self) -> str:
        """A printable table of :meth:`summary` (times in ms, total in s)."""
        stats = self.summary()
        width = max([len("interval"), *map(len, stats)])
        header = f"{'interval':<{width}} {'count':>7} {'mean[ms]':>10} {'std[ms]':>10} {'min[ms]':>10} "
        lines = [header + f"{'max[ms]':>10} {'total[s]':>10}"]
        for label, s in stats.items():
            times = " ".join(f"{1e3 * s[key]:>10.4f}" for key in ("mean_s", "std_s", "min_s", "max_s"))
            lines.append(f"{label:<{width}} {int(s['count']):>7d} {times} {s['total_s']:>10.4f}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"ProfilerHook(enable_nvtx={self.enable_nvtx}, enable_timer={self.enable_timer}, "
            f"frequency={self.frequency})"
        )


def _statistics(values: list[float]) -> dict[str, float]:
    count = len(values)
    mean = sum(values) / count
    variance = sum((v - mean) ** 2 for v in values) / (count - 1) if count > 1 else 0.0
    return {
        "mean_s": mean,
        "std_s": math.sqrt(variance),
        "min_s": min(values),
        "max_s": max(values),
        "total_s": sum(values),
        "count": count,
    }


__all__ = ["PROFILED_STAGES", "ProfilerHook"]
