"""Engine optimizers with a cell filter: ASE's numbers per system, fused and inflight runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT
from ase.filters import FrechetCellFilter, UnitCellFilter
from ase.optimize import BFGS as AseBFGS
from ase.optimize import FIRE as AseFIRE
from ase.optimize import LBFGS as AseLBFGS
from ase.optimize import MDMin as AseMDMin
from ase.units import GPa

from nvalchemi_ase.data import Batch
from nvalchemi_ase.dynamics import (
    BFGS,
    FIRE,
    LBFGS,
    NVE,
    ConvergenceHook,
    InflightSampler,
    MDMin,
    NVTLangevin,
)
from nvalchemi_ase.dynamics.variable_cell import CELL_FIELDS, CellFilter
from nvalchemi_ase.models import EMT, LennardJones

ENGINES = {
    "FIRE": (FIRE, AseFIRE),
    "BFGS": (BFGS, AseBFGS),
    "LBFGS": (LBFGS, AseLBFGS),
    "MDMin": (MDMin, AseMDMin),
}
CELL_ATOL = 1e-10


def strained_copper(seed: int, size=(2, 1, 1)):
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(size)
    atoms.rattle(0.04, seed=seed)
    strain = np.eye(3) + 0.03 * np.random.default_rng(seed).standard_normal((3, 3))
    atoms.set_cell(atoms.cell @ strain, scale_atoms=True)
    return atoms


def _ase_relaxed(atoms, optimizer, steps: int, **options):
    atoms = atoms.copy()
    atoms.calc = AseEMT()
    optimizer(FrechetCellFilter(atoms, **options), logfile=None).run(fmax=1e-9, steps=steps)
    return atoms


@pytest.mark.parametrize("name", sorted(ENGINES))
def test_each_engine_with_a_frechet_filter_equals_ase_per_system(name: str) -> None:
    engine_class, ase_class = ENGINES[name]
    systems = [strained_copper(k, size) for k, size in enumerate([(1, 1, 1), (2, 1, 1), (2, 2, 1)])]
    pressures = [0.0, 0.5 * GPa, -0.3 * GPa]
    batch = Batch.from_atoms(systems, device="cpu")
    engine = engine_class(
        EMT(),
        cell_filter=CellFilter("frechet"),
        convergence_hook={"criteria": {"threshold": 1e-9}},
        n_steps=15,
    )
    engine.init_state(batch)
    batch.cell_pressure = torch.tensor(pressures, dtype=batch.dtype)
    engine.run(batch)
    for b, (atoms, result) in enumerate(zip(systems, batch.to_atoms(), strict=True)):
        reference = _ase_relaxed(atoms, ase_class, 15, scalar_pressure=pressures[b])
        np.testing.assert_allclose(
            result.positions, reference.positions, atol=CELL_ATOL, err_msg=f"system {b}"
        )
        np.testing.assert_allclose(
            result.cell.array, reference.cell.array, atol=CELL_ATOL, err_msg=f"system {b}"
        )


def test_force_and_stress_convergence_per_system() -> None:
    systems = [strained_copper(k, size) for k, size in enumerate([(1, 1, 1), (2, 2, 1), (2, 1, 1)])]
    batch = Batch.from_atoms(systems, device="cpu")
    hook = ConvergenceHook([{"key": "fmax", "threshold": 1e-3}, {"key": "cell_stress", "threshold": 1e-5}])
    engine = FIRE(EMT(), cell_filter=CellFilter(pressure_GPa=1.0), convergence_hook=hook, n_steps=2000)
    engine.run(batch)
    assert bool(engine.converged.all())
    for atoms in batch.to_atoms():
        atoms.calc = AseEMT()
        residual = atoms.get_stress(voigt=False) + 1.0 * GPa * np.eye(3)
        assert np.abs(residual).max() < 1e-5
        assert np.linalg.norm(atoms.get_forces(), axis=1).max() < 2e-3  # forces @ F below 1e-3


def test_unit_filter_with_mask_keeps_the_masked_components() -> None:
    atoms = strained_copper(3)
    batch = Batch.from_atoms([atoms], device="cpu")
    engine = FIRE(EMT(), cell_filter=CellFilter("unit", mask=[1, 1, 0, 0, 0, 0]), n_steps=10)
    engine.run(batch)
    reference = atoms.copy()
    reference.calc = AseEMT()
    AseFIRE(UnitCellFilter(reference, mask=[1, 1, 0, 0, 0, 0]), logfile=None).run(fmax=0.05, steps=10)
    np.testing.assert_allclose(batch.cell[0].numpy(), reference.cell.array, atol=CELL_ATOL)
    np.testing.assert_allclose(
        batch.cell[0, :, 2].numpy(), atoms.cell.array[:, 2], atol=1e-14
    )  # zz, yz, xz fixed


def test_fused_cell_relaxation_then_nvt_keeps_each_relaxed_cell() -> None:
    systems = [strained_copper(k, size) for k, size in enumerate([(1, 1, 1), (2, 1, 1)])]
    batch = Batch.from_atoms(systems, device="cpu")
    model = EMT()
    relax = FIRE(
        model, cell_filter=CellFilter(), convergence_hook=ConvergenceHook.from_fmax(1e-2), n_steps=300
    )
    md = NVTLangevin(model, dt=2.0, temperature=100.0, friction=0.01, seed=0, n_steps=5)
    pipeline = relax + md
    cells: list = []
    relax.register_hook(_ConvergedCells(cells))
    pipeline.run(batch)
    assert (batch.status == 2).all() and not batch.unconverged.any()
    relaxed = dict(cells)
    alone = Batch.from_atoms(systems, device="cpu")
    FIRE(EMT(), cell_filter=CellFilter(), convergence_hook=ConvergenceHook.from_fmax(1e-2), n_steps=300).run(
        alone
    )
    for b in range(2):
        np.testing.assert_array_equal(batch.cell[b].numpy(), relaxed[b])  # MD at fixed cell
        np.testing.assert_allclose(relaxed[b], alone.cell[b].numpy(), atol=CELL_ATOL)


class _ConvergedCells:
    """Records each system's cell when it converges (ON_CONVERGE)."""

    stage = None
    frequency = 1

    def __init__(self, cells: list) -> None:
        from nvalchemi_ase.hooks.stages import DynamicsStage

        self.stages = (DynamicsStage.ON_CONVERGE,)
        self.cells = cells

    def __call__(self, ctx, stage) -> None:
        for b in ctx.converged_mask.nonzero().flatten().tolist():
            self.cells.append((b, ctx.batch.cell[b].numpy().copy()))


def test_cell_state_follows_systems_through_inflight_refills() -> None:
    structures = [strained_copper(k, (1, 1, 1) if k % 2 else (2, 1, 1)) for k in range(4)]
    model = EMT()

    def relax() -> FIRE:
        return FIRE(
            model, cell_filter=CellFilter(), convergence_hook=ConvergenceHook.from_fmax(1e-2), n_steps=300
        )

    fused = relax() + NVE(model, dt=1.0, n_steps=1)
    results = fused.run_inflight(InflightSampler(structures, max_systems=2, device="cpu"))
    alone = Batch.from_atoms(structures, device="cpu")
    relax().run(alone)
    assert len(results) == 4
    for k, result in enumerate(results):
        assert not result.info["unconverged"]
        np.testing.assert_allclose(
            result.cell.array, alone.cell[k].numpy(), atol=CELL_ATOL, err_msg=f"structure {k}"
        )


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        CellFilter("cubic")
    with pytest.raises(ValueError, match="mask"):
        CellFilter(mask=[1, 1, 1])
    lj = LennardJones(sigma=3.4, epsilon=0.0104, rc=8.5)
    with pytest.raises(TypeError, match="cell_filter must be a CellFilter"):
        FIRE(lj, cell_filter="frechet")
    cluster = bulk("Cu", cubic=True)
    cluster.pbc = False
    molecule = Batch.from_atoms([bulk("Cu", cubic=True), cluster], device="cpu")
    with pytest.raises(ValueError, match="system 1: pbc"):
        FIRE(EMT(), cell_filter=CellFilter()).run(molecule, n_steps=1)
    assert set(CELL_FIELDS) <= set(Batch.from_atoms([strained_copper(0)]).field_names()) | set(CELL_FIELDS)
