"""The stage loop: ``DynamicsStage`` and ``BaseDynamics``.

One ``step()`` fires hooks at nine points around ``pre_update`` / ``compute`` /
``post_update``::

    BEFORE_STEP → BEFORE_PRE_UPDATE → pre_update() → AFTER_PRE_UPDATE
    → BEFORE_COMPUTE → compute() → AFTER_COMPUTE
    → BEFORE_POST_UPDATE → post_update() → AFTER_POST_UPDATE
    → AFTER_STEP → convergence check → ON_CONVERGE (when systems converged)

Velocity Verlet maps onto it naturally: ``pre_update`` is the half kick and the
drift, ``compute`` the forces at the new positions, ``post_update`` the second
half kick. Nothing in a step waits for the device unless a hook that fires on
that step needs host values, or the convergence check is due (see
:class:`~nvalchemi_ase.dynamics.convergence.ConvergenceHook`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any

import torch

from nvalchemi_ase.data import FORCES_BOUND, MODEL_RESULTS, AtomCategory, Batch, Scope, keep_forces_bound
from nvalchemi_ase.dynamics.convergence import ConvergenceHook, ConvergenceTracking, as_convergence_hook
from nvalchemi_ase.dynamics.noise import CounterNoise, Draw
from nvalchemi_ase.hooks.constraints import Constraints
from nvalchemi_ase.hooks.registry import HookRegistryMixin
from nvalchemi_ase.hooks.stages import DynamicsStage
from nvalchemi_ase.models.base import Model, evaluate
from nvalchemi_ase.ops import segment_broadcast, velocities
from nvalchemi_ase.units import fs, kB

__all__ = ["BaseDynamics", "DynamicsStage"]


class BaseDynamics(ConvergenceTracking, HookRegistryMixin):
    """A stage loop over a model; subclasses supply ``pre_update`` and ``post_update``.

    Parameters
    ----------
    model
        A batched model (see :class:`~nvalchemi_ase.models.Model`) returning forces.
    dt
        Time step in fs (subclasses may document another meaning, e.g. FIRE).
    n_steps
        Default number of steps for :meth:`run`.
    hooks
        Hooks to register, in order.
    convergence_hook
        A :class:`~nvalchemi_ase.dynamics.ConvergenceHook` (or the keyword
        arguments of one, as a dict) deciding per system when it is done;
        ``None``: systems never converge and ``run`` takes ``n_steps`` steps.
    initial_temperature
        K. When set, systems get Maxwell–Boltzmann velocities at this
        temperature (zero total momentum, frozen atoms at rest) when they enter
        this engine: at the start of a standalone run, or on migrating into it
        inside a ``FusedStage``.
    velocity_seed
        Seed of those draws (``None``: random); a system's velocities depend
        on the seed and its ``system_id`` only (see
        :class:`~nvalchemi_ase.dynamics.noise.CounterNoise`).

    Notes
    -----
    Converged systems stop moving: their positions, velocities and per-system
    state are held while the others advance. ``step_count`` counts steps over
    all ``run`` calls.
    """

    _stage_type = DynamicsStage
    default_fmax: float | None = None
    """Optimizers set it: without a ``convergence_hook``, systems converge at ``fmax < default_fmax``."""
    state_fields: tuple[str, ...] = ()
    """Batch fields (besides positions and velocities) that hold this engine's per-system state."""

    def __init__(
        self,
        model: Model,
        dt: float = 1.0,
        n_steps: int | None = None,
        hooks: Iterable[Any] | None = None,
        convergence_hook: Any = None,
        *,
        initial_temperature: float | None = None,
        velocity_seed: int | None = None,
    ) -> None:
        if not isinstance(model, Model):
            raise TypeError(
                f"expected a batched model (cutoff, implemented_properties, __call__), got {model!r}"
            )
        if "forces" not in model.implemented_properties:
            raise TypeError(f"model {type(model).__name__} does not implement forces")
        if n_steps is not None and (isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 0):
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        if initial_temperature is not None and not initial_temperature >= 0.0:
            raise ValueError(f"initial_temperature must be non-negative (K), got {initial_temperature}")
        if convergence_hook is None and self.default_fmax is not None:
            convergence_hook = ConvergenceHook.from_fmax(self.default_fmax)
        convergence_hook = as_convergence_hook(convergence_hook)
        self.model = model
        self.dt = dt
        self.n_steps = n_steps
        self.convergence_hook = convergence_hook
        self.initial_temperature = initial_temperature
        self.velocity_seed = velocity_seed
        self._velocity_noise = CounterNoise(velocity_seed, counter=None)
        self.step_count = 0
        self.batch: Batch | None = None
        self.properties: set[str] = {"energy", "forces"}
        self.constraints: Constraints | None = None
        """The device constraint component (held components, FixCom) engines that need it read, or None."""
        self.converged: torch.Tensor | None = None
        self._step_mask: torch.Tensor | None = None
        """``[B]`` bool on the device: systems that have converged (and stopped moving)."""
        self.done = False
        self._newly_converged: torch.Tensor | None = None
        self._hook_stack: contextlib.ExitStack | None = None
        self._init_hooks(hooks)

    # ------------------------------------------------------------------ overridables
    @property
    def dt(self) -> float:
        """The time step in fs; assigning checks it as the constructor does (positive and finite)."""
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        try:
            dt = math.nan if isinstance(value, bool | str | bytes) else float(value)
        except (TypeError, ValueError):
            dt = math.nan
        if not 0.0 < dt < math.inf:
            raise ValueError(f"dt must be positive and finite (fs), got {value!r}")
        self._dt = dt

    @property
    def dt_internal(self) -> float:
        """The time step in ASE's internal time unit."""
        return self.dt * fs

    def pre_update(self, batch: Batch) -> None:
        """First half of the integrator step (before the forces are recomputed)."""

    def post_update(self, batch: Batch) -> None:
        """Second half of the integrator step (after the forces are recomputed)."""

    def init_state(self, batch: Batch) -> None:
        """Create this engine's per-system state fields on the batch (once per batch)."""

    def request_property(self, name: str) -> None:
        """Ask ``compute`` to have the model return ``name`` too (when the model implements it, or
        lists it in its ``extra_outputs``, as :data:`~nvalchemi_ase.data.fields.FORCES_BOUND`)."""
        if name in self.model.implemented_properties or name in getattr(self.model, "extra_outputs", ()):
            self.properties.add(name)

    # ------------------------------------------------------------------ the loop
    def compute(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Evaluate the model and write energy, forces (and stress, if requested) into the batch.

        Other results the model returned under ASE's names (per-atom ``energies``,
        ``magmoms``, ``charges``, ...: :data:`~nvalchemi_ase.data.fields.MODEL_RESULTS`)
        become batch fields too, so they reach the Atoms and trajectory frames. A
        :data:`~nvalchemi_ase.data.fields.FORCES_BOUND` is kept with the batch's new forces.
        """
        outputs = evaluate(self.model, batch, tuple(sorted(self.properties)))
        # evaluate checked the shapes, devices and dtypes: stored without checking them again
        batch.assign("energy", _detached(outputs["energy"]))
        batch.assign("forces", _detached(outputs["forces"]))
        if "stress" in outputs:
            batch.assign("stress", _detached(outputs["stress"]))
        for name in outputs:
            if name in MODEL_RESULTS:  # declared at the first step, then only set
                batch.add_field(name, _detached(outputs[name]), MODEL_RESULTS[name])
        keep_forces_bound(batch, outputs.get(FORCES_BOUND))
        return outputs

    def step(self, batch: Batch | None = None) -> Batch:
        """Advance every system not yet converged by one step; returns the (same) batch.

        A step is done once ``post_update`` and its hooks ran: an exception
        (a hook's, the model's, ``KeyboardInterrupt``) before that puts the
        batch's fields back as they were before the step (references, no
        copy) and leaves ``step_count`` as it was; one at ``AFTER_STEP`` or
        later counts the step. Either way ``step_count`` is the number of
        completed steps the batch holds.
        """
        batch = self._bind(batch)
        held = batch.fields_held()
        try:
            self._advance(batch)
        except BaseException:
            batch.put_back(held)
            raise
        try:
            self._finish(batch)
        finally:
            self.step_count += 1
        return batch

    def _finish(self, batch: Batch) -> None:
        """The step from ``AFTER_STEP`` on: observers, convergence."""
        self._call_hooks(DynamicsStage.AFTER_STEP, batch)
        self._check_convergence(batch)

    def _advance(self, batch: Batch) -> None:
        """The step up to ``AFTER_POST_UPDATE``: the new state."""
        if not self._by_stage:  # no hook at any stage: the moves and the model, nothing between
            moving = self._moving()
            self._update(self.pre_update, self.masked_pre_update, batch, moving)
            self._forces_then_post_update(batch, moving)
            return
        stages = DynamicsStage
        self._call_hooks(stages.BEFORE_STEP, batch)
        moving = self._moving()
        self._call_hooks(stages.BEFORE_PRE_UPDATE, batch)
        self._update(self.pre_update, self.masked_pre_update, batch, moving)
        self._call_hooks(stages.AFTER_PRE_UPDATE, batch)
        self._call_hooks(stages.BEFORE_COMPUTE, batch)
        self._forces_then_post_update(batch, moving)
        self._call_hooks(stages.AFTER_POST_UPDATE, batch)

    def _forces_then_post_update(self, batch: Batch, moving: torch.Tensor | None) -> None:
        """``compute``, the AFTER_COMPUTE and BEFORE_POST_UPDATE hooks, then ``post_update`` (NVE
        lets the model do its post-update, the second half kick, as it writes the forces)."""
        self.compute(batch)
        self._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        self._call_hooks(DynamicsStage.BEFORE_POST_UPDATE, batch)
        self._update(self.post_update, self.masked_post_update, batch, moving)

    def _moving(self) -> torch.Tensor | None:
        """``[B]`` bool, the systems a step moves (converged ones stay put); None: all of them
        (without a convergence hook none ever converge)."""
        if self.convergence_hook is not None and self.converged is not None:
            converged = self.converged
            return torch.logical_not(converged, out=self._scratch_mask(converged.shape, converged.device))
        return None

    def _scratch_mask(self, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
        """A bool tensor of this engine's, the same memory step after step (remade when the shape or
        device changes): a kernel given a mask from it finds its recorded launch again, where a new
        mask each step costs a re-packed launch (~30 µs on a CPU). Valid until the next step."""
        mask = self._step_mask
        if mask is None or mask.shape != shape or mask.device != device:
            mask = self._step_mask = torch.empty(shape, dtype=torch.bool, device=device)
        return mask

    def run(self, batch: Batch | None = None, n_steps: int | None = None) -> Batch:
        """Run up to ``n_steps`` steps (default: the constructor's), stopping once every system converged.

        Forces are computed before the first step when the batch has none,
        with the compute hooks firing, so neighbour lists, biases, clamps and
        NaN checks apply to them too.
        """
        steps = self.n_steps if n_steps is None else n_steps
        if steps is None:
            raise ValueError("no step count: pass n_steps to run() or to the constructor")
        with self.opened_hooks():
            batch = self.prime(batch)
            if self.convergence_hook is not None and self.step_count == 0:
                self._mark_converged(batch)
            for _ in range(int(steps)):
                if self.done:
                    break
                self.step(batch)
        return batch

    # ------------------------------------------------------------------ lifecycle
    def prime(self, batch: Batch | None = None, *, recompute: bool = False) -> Batch:
        """Bind ``batch`` (state, entry) and compute its forces when it has none, or when ``recompute``.

        The compute hooks fire around the model, so neighbour lists, biases,
        clamps and NaN checks apply to these forces too. ``run`` calls it;
        call it yourself after editing positions outside the engine
        (``recompute=True``) or to have forces before the first ``step``.
        """
        batch = self._bind(batch)
        if recompute or batch.forces is None or batch.energy is None:
            with self.opened_hooks():
                self._call_hooks(DynamicsStage.BEFORE_COMPUTE, batch)
                self.compute(batch)
                self._call_hooks(DynamicsStage.AFTER_COMPUTE, batch)
        return batch

    @contextlib.contextmanager
    def opened_hooks(self) -> Iterator[BaseDynamics]:
        """The hooks (files, timers) open for the block, unless the engine holds them open already.

        ``with engine:`` keeps them open across several calls; inside it this is a no-op.
        """
        if self._hook_stack is not None:
            yield self
            return
        with contextlib.ExitStack() as stack:
            for engine in self._hooked_engines():
                engine._open_hooks(stack)
            self._hook_stack = stack  # nested run/prime calls find them open
            try:
                yield self
            finally:
                self._hook_stack = None

    def __add__(self, other: BaseDynamics) -> BaseDynamics:
        """``relax + md``: a :class:`~nvalchemi_ase.dynamics.FusedStage` running both in one loop."""
        if not isinstance(other, BaseDynamics):
            return NotImplemented
        from nvalchemi_ase.dynamics.fused import fuse

        return fuse(self, other)

    def __enter__(self) -> BaseDynamics:
        """Open the hooks (files, timers) for several ``run``/``step`` calls; closed on exit."""
        self._hook_stack = contextlib.ExitStack()
        for engine in self._hooked_engines():
            engine._open_hooks(self._hook_stack)
        return self

    def __exit__(self, *exc_info: object) -> None:
        stack, self._hook_stack = self._hook_stack, None
        if stack is not None:
            stack.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={type(self.model).__name__}, dt={self.dt}, "
            f"n_steps={self.n_steps}, step_count={self.step_count}, hooks={len(self.hooks)}, "
            f"convergence_hook={self.convergence_hook!r})"
        )

    # ------------------------------------------------------------------ internals
    def _hooked_engines(self) -> list[BaseDynamics]:
        """The engines whose hooks this one opens (a fused stage: itself and its sub-stages)."""
        return [self]

    def _bind(self, batch: Batch | None) -> Batch:
        if batch is None:
            if self.batch is None:
                raise ValueError("no batch: pass one to run() or step()")
            return self.batch
        if batch is not self.batch:
            self.batch = batch
            if isinstance(self.model, torch.nn.Module):
                self.model.to(batch.device)
            self.converged = torch.zeros(batch.num_graphs, dtype=torch.bool, device=batch.device)
            self._newly_converged = torch.zeros_like(self.converged)
            self.done = False
            self.init_state(batch)
            self.enter(batch, torch.ones(batch.num_graphs, dtype=torch.bool, device=batch.device))
        return batch

    def hold(self, batch: Batch) -> dict[str, torch.Tensor]:
        """The tensors an update may replace: positions, velocities, this engine's state fields.

        References, not copies: engines replace batch fields with new tensors
        and never write into them (``tests/dynamics/test_masked_updates.py``
        checks every engine), so the held tensors keep the old values.
        """
        names = ("positions", "velocities", *self.state_fields, "noise_counter")
        present = set(batch.field_names())
        return {name: getattr(batch, name) for name in names if name in present}

    @staticmethod
    def restore(batch: Batch, held: dict[str, torch.Tensor], systems: torch.Tensor) -> None:
        """Put the held values back for ``systems`` (``[B]`` bool), branch-free (no sync).

        A field the update did not replace is left alone (no work).
        """
        atoms = None
        for name, saved in held.items():
            if getattr(batch, name) is saved:
                continue
            if batch.scope_of(name) is Scope.ATOM:
                atoms = segment_broadcast(systems, batch.batch_idx) if atoms is None else atoms
                mask = atoms
            else:
                mask = systems
            mask = mask.view(-1, *([1] * (saved.dim() - 1)))
            setattr(batch, name, torch.where(mask, saved, getattr(batch, name)))

    def masked_pre_update(self, batch: Batch, members: torch.Tensor) -> None:
        """``pre_update`` for the systems in ``members`` (``[B]`` bool) only; the others are untouched."""
        held = self.hold(batch)
        self.pre_update(batch)
        self.restore(batch, held, ~members)

    def masked_post_update(self, batch: Batch, members: torch.Tensor) -> None:
        """``post_update`` for the systems in ``members`` only."""
        if type(self).post_update is BaseDynamics.post_update:  # nothing to do (FIRE: its step is all
            return  # in pre_update), so nothing to hold or put back
        held = self.hold(batch)
        self.post_update(batch)
        self.restore(batch, held, ~members)

    def _enters_quietly(self) -> bool:
        """Whether :meth:`enter` does nothing (no ``initial_temperature``, not overridden): then a
        fused stage need not even make the mask of the systems that enter."""
        return type(self).enter is BaseDynamics.enter and self.initial_temperature is None

    def enter(self, batch: Batch, systems: torch.Tensor) -> None:
        """Prepare ``systems`` (``[B]`` bool) entering this engine: with ``initial_temperature`` set,
        give them Maxwell–Boltzmann velocities at that temperature (zero total momentum per system)."""
        if self.initial_temperature is None:
            return
        (noise,) = self._velocity_noise.draw(batch, [Draw("standard_normal", per_atom=True, shape=(3,))])
        kT = torch.full_like(batch.masses, self.initial_temperature * kB)
        drawn = velocities.maxwell_boltzmann(batch.masses, kT, noise)
        drawn = velocities.remove_drift(drawn, batch.masses, batch.batch_idx, batch.num_graphs)
        moving = (batch.atom_categories != AtomCategory.FROZEN) & segment_broadcast(systems, batch.batch_idx)
        batch.velocities = torch.where(moving.unsqueeze(1), drawn, batch.velocities)

    @staticmethod
    def _update(plain: Any, masked: Any, batch: Batch, moving: torch.Tensor | None) -> None:
        if moving is None:
            plain(batch)
        else:
            masked(batch, moving)


def _detached(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` without autograd history; itself when it has none (a detach is a new tensor object)."""
    return tensor.detach() if tensor.requires_grad else tensor
