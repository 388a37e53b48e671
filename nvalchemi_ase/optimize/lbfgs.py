"""``LBFGS``: ``ase.optimize.LBFGS`` over the batched LBFGS engine (a history per system)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import IO, Any

import numpy as np
import torch
from ase import Atoms

from nvalchemi_ase.dynamics import LBFGS as LBFGSEngine
from nvalchemi_ase.optimize.linesearch import LineSearchLBFGSEngine
from nvalchemi_ase.optimize.optimize import Optimizer, restart_array

__all__ = ["LBFGS", "LBFGSLineSearch"]


class LBFGS(Optimizer):
    """Limited-memory BFGS with ASE's signature, defaults and numbers, per system.

    Parameters
    ----------
    atoms, restart, logfile, trajectory
        As :class:`~nvalchemi_ase.optimize.optimize.Optimizer` (``logfile='-'``
        by default).
    maxstep
        Largest per-atom displacement per step, Å (``None``: 0.2; above 1.0
        raises ValueError, as ASE).
    memory
        Number of (Δx, Δg) pairs kept.
    damping
        Factor on each step.
    alpha
        Initial inverse Hessian ``I/alpha`` (eV/Å²).
    use_line_search
        ASE's line search (:mod:`nvalchemi_ase.optimize.linesearch`): each
        step is ``alpha_k p`` with ``alpha_k`` from ASE's ``LineSearch`` per
        system (``damping`` unused, ``maxstep`` bounds the search's moves).
        Host-driven: every trial point is a host round trip (all searching
        systems in one model call), and each step then evaluates the new
        positions once more. Not with constraints applied on the host
        (NotImplementedError).
    **kwargs
        ``append_trajectory``, ``master``, ``comm``, ``loginterval``.

    Notes
    -----
    A restart file holds ASE's ``(iteration, s, y, rho, r0, f0, e0, task)``:
    the step count, the stored pairs oldest first (flat arrays), the previous
    flat positions and forces, ``e0`` (``None``; with the line search, the
    energy at the start of the last step) and ``task = 'START'``. Reading one
    restores the first seven into the engine's fixed-size history (pair ``j``
    in slot ``j``). A file must hold
    ``min(iteration - 1, memory)`` pairs: one written with another ``memory``
    raises ValueError (ASE's LBFGS then mostly fails later with an IndexError or
    recurses over a stale part of its history). Systems without a file start
    fresh. A restored history is carried over as the engine carries any
    history: its recursion visits all ``memory`` slots (the empty ones change
    nothing).

    ``function_calls`` and ``force_calls`` are ASE's counters, per system (an
    int for one ``Atoms``, a ``[B]`` array for a list): without the line search
    both count the steps a system took.
    """

    def __init__(
        self,
        atoms: Atoms | Sequence[Atoms],
        restart: str | None = None,
        logfile: IO | str | None = "-",
        trajectory: Any = None,
        maxstep: float | None = None,
        memory: int = 100,
        damping: float = 1.0,
        alpha: float = 70.0,
        use_line_search: bool = False,
        **kwargs: Any,
    ) -> None:
        self.maxstep = self.defaults["maxstep"] if maxstep is None else maxstep
        if self.maxstep > 1.0:
            raise ValueError(
                f"You are using a much too large value for the maximum step size: {self.maxstep:.1f} Angstrom"
            )
        self.memory, self.damping, self._alpha = memory, damping, alpha  # ASE keeps no `alpha` attribute
        self.use_line_search = use_line_search
        self._iteration0: torch.Tensor | None = None  # iterations restored from files (counters start at 0)
        super().__init__(atoms, restart, logfile, trajectory, **kwargs)
        if use_line_search and self._host_constraints is not None:
            self.close()
            raise NotImplementedError(
                "LBFGS(use_line_search=True) with constraints applied on the host "
                f"({sorted({type(c).__name__ for a in self.systems.atoms for c in a.constraints})})"
            )

    def _make_engine(self, model: Any) -> LBFGSEngine:
        if self.use_line_search:
            if getattr(self.systems, "has_filters", False):
                raise NotImplementedError("LBFGS(use_line_search=True) with cell filters is not supported")
            return LineSearchLBFGSEngine(
                model, maxstep=self.maxstep, memory=self.memory, damping=self.damping, alpha=self._alpha
            )
        return LBFGSEngine(
            model,
            maxstep=self.maxstep,
            memory=self.memory,
            damping=self.damping,
            alpha=self._alpha,
            cell_filter=self.cell_filter,
        )

    @property
    def function_calls(self) -> int | np.ndarray:
        """ASE's ``function_calls``: energy evaluations per system (an int for one ``Atoms``)."""
        return self._calls("function_calls")

    @property
    def force_calls(self) -> int | np.ndarray:
        """ASE's ``force_calls``: gradient evaluations per system (an int for one ``Atoms``)."""
        return self._calls("force_calls")

    def _calls(self, name: str) -> int | np.ndarray:
        engine, batch = self.engine, self.systems.batch
        if isinstance(engine, LineSearchLBFGSEngine):
            engine.ensure_counters(len(self.systems))
            calls = getattr(engine, name).copy()
        elif "lbfgs_iteration" in batch.field_names():
            taken = batch.lbfgs_iteration - (0 if self._iteration0 is None else self._iteration0)
            calls = taken.cpu().numpy().astype(np.int64)
        else:
            calls = np.zeros(len(self.systems), dtype=np.int64)
        return int(calls[0]) if isinstance(self.atoms, Atoms) else calls

    def read(self) -> None:
        """ASE's restart: iteration, history and previous positions and forces of each system with a file."""
        batch = self.systems.batch
        self.engine.init_state(batch)
        s, y, rho = batch.lbfgs_s.clone(), batch.lbfgs_y.clone(), batch.lbfgs_rho.clone()
        iteration = batch.lbfgs_iteration.clone()
        positions0, forces0 = batch.lbfgs_positions0.clone(), batch.lbfgs_forces0.clone()
        old_energies: list[float | None] = [None] * len(self.systems)
        for b, path in enumerate(self._restart_paths):
            if not path.is_file():
                continue
            i, s_list, y_list, rho_list, r0, f0, *rest = self.load(b)
            old_energies[b] = None if not rest or rest[0] is None else float(rest[0])
            pairs = min(max(int(i) - 1, 0), self.memory)
            if not len(s_list) == len(y_list) == len(rho_list) == pairs:
                raise ValueError(
                    f"{path}: {len(s_list)} stored pairs at iteration {i}; LBFGS(memory={self.memory}) "
                    f"needs {pairs} (was the file written with another memory?)"
                )
            rows, shape = self.systems.rows(b), (len(self.systems.atoms[b]), 3)
            for j in range(pairs):
                s[rows, j] = restart_array(s_list[j], shape, batch, path)
                y[rows, j] = restart_array(y_list[j], shape, batch, path)
            rho[b, :pairs] = restart_array(rho_list, (pairs,), batch, path)
            iteration[b] = int(i)
            positions0[rows] = restart_array(r0, shape, batch, path)
            forces0[rows] = restart_array(f0, shape, batch, path)
        batch.lbfgs_s, batch.lbfgs_y, batch.lbfgs_rho, batch.lbfgs_iteration = s, y, rho, iteration
        batch.lbfgs_positions0, batch.lbfgs_forces0 = positions0, forces0
        self._iteration0 = iteration.clone()
        if isinstance(self.engine, LineSearchLBFGSEngine):
            self.engine.ensure_counters(len(self.systems))
            self.engine.old_energies = old_energies

    def _restart_tensors(self, batch: Any) -> dict[str, torch.Tensor]:
        return {
            "lbfgs_iteration": batch.lbfgs_iteration,
            "lbfgs_s": batch.lbfgs_s,
            "lbfgs_y": batch.lbfgs_y,
            "lbfgs_rho": batch.lbfgs_rho,
            "lbfgs_positions0": batch.lbfgs_positions0,
            "lbfgs_forces0": batch.lbfgs_forces0,
        }

    def _restart_data(self, host: dict[str, np.ndarray], b: int) -> Any:
        iteration, rows = int(host["lbfgs_iteration"][b]), self.systems.rows(b)
        pairs = min(max(iteration - 1, 0), self.memory)
        s, y = host["lbfgs_s"][rows], host["lbfgs_y"][rows]
        return (
            iteration,
            [s[:, j].ravel() for j in range(pairs)],
            [y[:, j].ravel() for j in range(pairs)],
            [float(r) for r in host["lbfgs_rho"][b, :pairs]],
            host["lbfgs_positions0"][rows].ravel(),
            host["lbfgs_forces0"][rows].ravel(),
            self.engine.old_energies[b] if isinstance(self.engine, LineSearchLBFGSEngine) else None,
            "START",
        )


class LBFGSLineSearch(LBFGS):
    """ASE's ``LBFGSLineSearch``: :class:`LBFGS` with ``use_line_search=True``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["use_line_search"] = True
        super().__init__(*args, **kwargs)
