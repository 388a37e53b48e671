"""ASE's ``LBFGS(use_line_search=True)`` step for a batch: an ASE ``LineSearch`` per system, batched calls.

ASE's line search (:class:`ase.utils.linesearch.LineSearch`, More–Thuente
with ASE's step limit) is an iterative host algorithm asking for the energy
and gradient at trial points, a different number of times per system. Each
system's search runs ASE's own ``LineSearch._line_search`` in a worker thread
whose ``func`` posts the trial positions and waits; the coordinator (the
calling thread) waits until every system still searching has posted or
finished, evaluates all posted trial points in ONE model call (the engine's
``compute`` with its compute hooks, as any force call), hands each system its
energy and gradient, and repeats until every search has finished. Each
system's search depends only on its own values, and systems are evaluated in
index order, so the results do not depend on thread timing.

This step is host-driven (copies to the host every round); the default
``LBFGS`` path does not use it. Reference: ASE 3.29 ``ase/optimize/lbfgs.py``
(``step``, ``line_search``) and ``ase/utils/linesearch.py``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from ase.utils.linesearch import LineSearch

from nvalchemi_ase.data import Batch
from nvalchemi_ase.data.host import to_host
from nvalchemi_ase.dynamics import LBFGS as LBFGSEngine
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.ops.lbfgs import lbfgs_direction

__all__ = ["LineSearchLBFGSEngine", "run_line_searches"]

Evaluation = tuple[float, np.ndarray]
"""A system's energy (eV) and flat gradient ``(3n,)`` (eV/Å) at a trial point."""


class _Stopped(Exception):
    """Raised inside a worker's ``func`` when the coordinator gives up (another system failed)."""


_STOP = object()


class _Search:
    """ASE's line search of one system (ASE's ``LBFGS.line_search``), run in a worker thread.

    Parameters
    ----------
    system
        The system's index (the key of its posts).
    positions, direction, gradient
        Flat ``(3n,)`` x, p and g at the start of the step (ASE's ``pos``, ``self.p``, ``g``);
        ``direction`` is rescaled here as ASE rescales a tiny ``p``.
    energy
        The energy at ``positions`` (ASE's ``e = self.func(pos)``).
    old_energy
        ASE's ``self.e0`` (passed through, unused by the search).
    maxstep
        Largest displacement of any atom between trial points, Å.
    """

    def __init__(
        self,
        system: int,
        positions: np.ndarray,
        direction: np.ndarray,
        gradient: np.ndarray,
        energy: float,
        old_energy: float | None,
        maxstep: float,
    ) -> None:
        self.system = system
        self.positions, self.gradient, self.energy = positions, gradient, energy
        self.old_energy, self.maxstep = old_energy, maxstep
        smallest = np.sqrt(direction.size / 3 * 1e-10)  # ASE: sqrt(ndofs / 3 * 1e-10)
        size = np.sqrt((direction**2).sum())
        self.direction = direction / (size / smallest) if size <= smallest else direction
        self.function_calls = 1  # ASE's func(pos) before the search
        self.force_calls = 0
        self.alpha: float | None = None
        self.error: BaseException | None = None
        self.replies: queue.Queue[Any] = queue.Queue()
        self._requests: queue.Queue[tuple[int, np.ndarray | None]] | None = None
        self._x: np.ndarray | None = None
        self._last: Evaluation | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"line-search-{system}")

    def start(self, requests: queue.Queue[tuple[int, np.ndarray | None]]) -> None:
        self._requests = requests
        self.thread.start()

    def step(self) -> np.ndarray:
        """ASE's ``pos + alpha_k * p`` (call after a successful search)."""
        assert self.alpha is not None
        return self.positions + self.alpha * self.direction

    def _run(self) -> None:
        assert self._requests is not None
        try:
            search = LineSearch()  # ASE passes optimizable.gradient_norm: the same largest row norm
            self.alpha, *_ = search._line_search(
                self._func,
                self._fprime,
                self.positions,
                self.direction,
                self.gradient,
                self.energy,
                self.old_energy,
                maxstep=self.maxstep,
                c1=0.23,
                c2=0.46,
                stpmax=50.0,
            )
        except _Stopped:
            pass
        except BaseException as error:  # handed to the coordinator, raised there
            self.error = error
        finally:
            self._requests.put((self.system, None))

    def _evaluate(self, x: np.ndarray) -> Evaluation:
        assert self._requests is not None
        self._x = x.copy()
        self._requests.put((self.system, self._x))
        reply = self.replies.get()
        if reply is _STOP:
            raise _Stopped
        self._last = reply
        return reply

    def _func(self, x: np.ndarray) -> float:
        self.function_calls += 1
        return self._evaluate(x)[0]

    def _fprime(self, x: np.ndarray) -> np.ndarray:
        self.force_calls += 1
        last = self._last if self._x is not None and np.array_equal(x, self._x) else self._evaluate(x)
        assert last is not None
        return last[1].copy()


def run_line_searches(
    searches: dict[int, _Search], evaluate: Callable[[dict[int, np.ndarray]], dict[int, Evaluation]]
) -> None:
    """Run every search to its end, evaluating each round's trial points with one ``evaluate`` call.

    ``evaluate`` maps ``{system: flat trial positions}`` (systems in index
    order) to ``{system: (energy, flat gradient)}``. An exception in a search
    or in ``evaluate`` stops every worker (all joined) and is raised here.
    """
    requests: queue.Queue[tuple[int, np.ndarray | None]] = queue.Queue()
    running = set(searches)
    try:
        for system in sorted(searches):
            searches[system].start(requests)
        while running:
            posted: dict[int, np.ndarray] = {}
            for _ in range(len(running)):  # each running search posts once per round
                system, x = requests.get()
                if x is None:
                    running.discard(system)
                else:
                    posted[system] = x
            for system in sorted(searches):
                error = searches[system].error
                if error is not None:
                    raise error
            if posted:
                values = evaluate(dict(sorted(posted.items())))
                for system in posted:
                    searches[system].replies.put(values[system])
    finally:
        for system in running:
            searches[system].replies.put(_STOP)
        for search in searches.values():
            if search.thread.ident is not None:  # started
                search.thread.join()


class LineSearchLBFGSEngine(LBFGSEngine):
    """The batched L-BFGS engine stepping as ASE's ``LBFGS(use_line_search=True)``.

    The history and direction ``p = −H g`` are the engine's (on the device);
    the step is ``alpha_k p`` with ``alpha_k`` from ASE's line search per
    system (``damping`` and the ``maxstep`` cap of the plain step do not
    apply; ``maxstep`` limits the line search's moves). Host-driven.

    Attributes
    ----------
    function_calls, force_calls
        ``[B]`` host counters, ASE's per system (one energy call per step, one
        energy and one gradient call per trial point).
    old_energies
        ``[B]`` ASE's ``e0`` per system: the energy at the start of the last
        step (``None`` before the first).
    """

    def __init__(self, model: Any, **options: Any) -> None:
        super().__init__(model, **options)
        self.function_calls = np.zeros(0, dtype=np.int64)
        self.force_calls = np.zeros(0, dtype=np.int64)
        self.old_energies: list[float | None] = []
        self._members: torch.Tensor | None = None

    def ensure_counters(self, num_systems: int) -> None:
        """Counters and ``e0`` for ``num_systems`` systems (kept when already that size)."""
        if self.function_calls.size != num_systems:
            self.function_calls = np.zeros(num_systems, dtype=np.int64)
            self.force_calls = np.zeros(num_systems, dtype=np.int64)
            self.old_energies = [None] * num_systems

    def masked_pre_update(self, batch: Batch, members: torch.Tensor) -> None:
        self._members = members  # converged systems do not search (ASE stops before their step)
        try:
            super().masked_pre_update(batch, members)
        finally:
            self._members = None

    def pre_update(self, batch: Batch) -> None:
        loops = min(self._history_bound, self.memory)
        direction, state = lbfgs_direction(
            batch.positions, batch.forces, self.state(batch), self.alpha, batch.batch_idx, loops=loops
        )
        batch.positions = self._line_search(batch, direction)
        self._history_bound = min(self._history_bound + 1, self.memory)
        self.store(batch, state)

    def _line_search(self, batch: Batch, direction: torch.Tensor) -> torch.Tensor:
        """New positions ``[N, 3]``: each searching system at ASE's ``pos + alpha_k p``, the others kept."""
        members = self._members
        if members is None:
            members = torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.device)
        counts = torch.bincount(batch.batch_idx, minlength=batch.num_graphs)
        x, forces, p, energy, moving, counts_host = to_host(
            [batch.positions, batch.forces, direction, batch.energy.view(-1), members, counts]
        )
        starts = np.concatenate([[0], np.cumsum(counts_host.astype(np.int64))])
        self.ensure_counters(batch.num_graphs)
        searches = {}
        for b in map(int, np.flatnonzero(moving)):
            rows = slice(int(starts[b]), int(starts[b + 1]))
            searches[b] = _Search(
                b,
                x[rows].ravel(),
                p[rows].ravel(),
                -forces[rows].ravel(),
                float(energy[b]),
                self.old_energies[b],
                self.maxstep,
            )
        saved = (batch.positions, batch.energy, batch.forces)
        try:
            run_line_searches(searches, lambda trial: self._evaluate(batch, x, starts, trial))
        finally:
            batch.positions, batch.energy, batch.forces = saved
            for b, search in searches.items():
                self.function_calls[b] += search.function_calls
                self.force_calls[b] += search.force_calls
        if any(search.alpha is None for search in searches.values()):
            raise RuntimeError("LineSearch failed!")
        new = x.copy()
        for b, search in searches.items():
            new[int(starts[b]) : int(starts[b + 1])] = search.step().reshape(-1, 3)
            self.old_energies[b] = search.energy
        return torch.as_tensor(new, dtype=batch.dtype).to(batch.device)

    def _evaluate(
        self, batch: Batch, x: np.ndarray, starts: np.ndarray, trial: dict[int, np.ndarray]
    ) -> dict[int, Evaluation]:
        """One model call (with the compute hooks) at every system's trial point; the others at ``x``."""
        positions = x.copy()
        for b, flat in trial.items():
            positions[int(starts[b]) : int(starts[b + 1])] = flat.reshape(-1, 3)
        batch.positions = torch.as_tensor(positions, dtype=batch.dtype).to(batch.device)
        self._call_hooks(DynamicsStage.BEFORE_COMPUTE, batch)
        self.compute(batch)
        self._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        energy, forces = to_host([batch.energy.view(-1), batch.forces])
        return {b: (float(energy[b]), -forces[int(starts[b]) : int(starts[b + 1])].ravel()) for b in trial}
