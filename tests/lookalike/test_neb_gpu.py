"""On CUDA, NEB steps sync with the host only for outputs, and give the CPU's bands."""

from __future__ import annotations

import pytest
from ase.mep import DyNEB

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import EMT
from nvalchemi_ase.optimize import FIRE
from tests.cuda import no_syncs
from tests.lookalike.neb_cases import adatom_hop, band, fcc_to_hcp_hop, ours, vacancy_jump
from tests.tolerances import DEVICE_MATCH_ATOL

pytestmark = pytest.mark.gpu


def _bands(calculator):
    return [
        band(adatom_hop(), 5, calculator, climb=True),
        band(vacancy_jump(), 6, calculator, method="eb"),
        band(fcc_to_hcp_hop(), 5, calculator, DyNEB, fmax=0.05, scale_fmax=1.0, climb=True),
        band(adatom_hop(), 5, calculator, method="spline", climb=True),
        band(vacancy_jump(), 4, calculator, method="string"),
    ]


def test_steps_without_outputs_do_not_sync_and_equal_the_cpu():
    model = EMT()
    on_cuda = _bands(lambda: BatchedCalculator(model, device="cuda"))
    optimizer = FIRE(on_cuda, logfile=None)
    next(optimizer.irun(fmax=0.05, steps=30))  # first forces, neighbour lists, kernels
    with no_syncs():
        for _ in range(10):
            optimizer.engine.step(optimizer.systems.batch)
    optimizer.run(fmax=0.05, steps=20)
    on_cpu = _bands(ours)
    reference = FIRE(on_cpu, logfile=None)
    reference.run(fmax=0.05, steps=30)
    for b, (mine, cpu) in enumerate(zip(on_cuda, on_cpu, strict=True)):
        for image, cpu_image in zip(mine.images, cpu.images, strict=True):
            assert abs(image.positions - cpu_image.positions).max() < DEVICE_MATCH_ATOL, f"band {b}"
