"""Setters refuse what constructors refuse, and leave everything as it was when they do."""

from __future__ import annotations

import math

import pytest
from ase import units
from ase.build import bulk

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.dynamics import FIRE, NVE, NVTLangevin
from nvalchemi_ase.md.andersen import Andersen
from nvalchemi_ase.md.langevin import Langevin
from nvalchemi_ase.md.nvtberendsen import NVTBerendsen
from nvalchemi_ase.md.verlet import VelocityVerlet
from nvalchemi_ase.models import LennardJones

ARGON_LJ = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5}
BAD_DT = [math.inf, math.nan, 0.0, -1.0, True, "1"]


def _atoms():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True)
    atoms.calc = BatchedCalculator(LennardJones(**ARGON_LJ), device="cpu")
    return atoms


@pytest.mark.parametrize("dt", BAD_DT)
@pytest.mark.parametrize("engine_class", [NVE, FIRE])
def test_engine_dt_is_checked_in_the_constructor_and_on_assignment(engine_class, dt):
    model = LennardJones(**ARGON_LJ)
    with pytest.raises(ValueError, match="dt must be positive and finite"):
        engine_class(model, dt=dt)
    engine = engine_class(model, dt=0.5)
    with pytest.raises(ValueError, match="dt must be positive and finite"):
        engine.dt = dt
    assert engine.dt == 0.5


@pytest.mark.parametrize(
    ("name", "value"), [("temperature", -5.0), ("temperature", math.inf), ("friction", -0.1)]
)
def test_engine_langevin_parameters_are_checked_on_assignment(name, value):
    engine = NVTLangevin(LennardJones(**ARGON_LJ), dt=1.0, temperature=300.0, friction=0.01)
    with pytest.raises(ValueError, match=f"{name} must be finite and non-negative"):
        setattr(engine, name, value)
    with pytest.raises(ValueError, match=f"{name} must be finite and non-negative"):
        NVTLangevin(LennardJones(**ARGON_LJ), dt=1.0, **{"temperature": 300.0, "friction": 0.01, name: value})
    assert float(engine.temperature) == 300.0 and float(engine.friction) == 0.01


@pytest.mark.parametrize("timestep", [math.inf, -units.fs, 0.0])
def test_lookalike_timestep_is_checked_and_nothing_changes(timestep):
    with pytest.raises(ValueError, match="dt must be positive and finite"):
        VelocityVerlet(_atoms(), timestep=timestep)
    dyn = Langevin(_atoms(), units.fs, temperature_K=100, friction=0.01, fixcm=False)
    for set_it in (lambda: setattr(dyn, "dt", timestep), lambda: dyn.set_timestep(timestep)):
        with pytest.raises(ValueError, match="dt must be positive and finite"):
            set_it()
        assert dyn.dt == units.fs and dyn.engine.dt == pytest.approx(1.0)
    dyn.run(2)  # still runs with the old step


def test_lookalike_thermostat_setters_refuse_negative_values_and_change_nothing():
    langevin = Langevin(_atoms(), units.fs, temperature_K=100, friction=0.01, fixcm=False)
    with pytest.raises(ValueError, match="temperature must be finite and non-negative"):
        langevin.set_temperature(temperature_K=-100)
    with pytest.raises(ValueError, match="friction must be finite and non-negative"):
        langevin.set_friction(-0.01)
    assert langevin.temp == pytest.approx(100 * units.kB) and langevin.fr == 0.01
    assert langevin.todict()["temperature_K"] == pytest.approx(100)

    andersen = Andersen(_atoms(), units.fs, temperature_K=100, andersen_prob=0.1)
    with pytest.raises(ValueError, match="temperature must be finite and non-negative"):
        andersen.set_temperature(-100)
    with pytest.raises(ValueError, match="andersen_prob must be finite"):
        andersen.set_andersen_prob(2.0)
    assert andersen.temp == pytest.approx(100 * units.kB) and andersen.andersen_prob == 0.1

    berendsen = NVTBerendsen(_atoms(), units.fs, temperature_K=100, taut=100 * units.fs)
    with pytest.raises(ValueError, match="temperature must be finite and non-negative"):
        berendsen.set_temperature(temperature_K=-100)
    with pytest.raises(ValueError, match="taut must be finite and positive"):
        berendsen.set_taut(-1.0)
    assert berendsen.get_temperature() == 100 and berendsen.get_taut() == 100 * units.fs
