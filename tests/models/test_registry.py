"""``models.load``: names, arguments, entry points, ASE calculators by path, and clear errors."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from ase.build import bulk
from ase.calculators.emt import EMT as AseEMT

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.models import ASECalculatorModel, LennardJones
from nvalchemi_ase.models import registry as registry_module
from nvalchemi_ase.models.registry import (
    ENTRY_POINT_GROUP,
    MissingExtraError,
    UnknownModelError,
    available,
    load,
    register,
    require,
)
from tests.tolerances import FLOAT64_RTOL


def test_builtin_names_give_our_models_with_their_parameters():
    model = load("lj", sigma=3.4, epsilon=0.0104, rc=8.5)
    assert isinstance(model, LennardJones) and model.cutoff == 8.5
    assert type(load("LJ")) is LennardJones  # names are case-insensitive


def test_every_family_is_listed_with_its_extra():
    names = available()
    assert {"lj", "morse", "emt", "7net-0", "chgnet", "mace"} <= set(names)
    assert (
        names["7net-0"].extra == "sevenn"
        and names["chgnet"].extra == "chgnet"
        and names["mace"].extra == "mace"
    )


@pytest.mark.parametrize("name", ["?", "no-such-model", ""])
def test_unknown_names_list_what_is_available(name):
    with pytest.raises(UnknownModelError, match="known names") as error:
        load(name)
    if name:
        assert "7net-0" in str(error.value)


def test_an_ase_calculator_by_import_path_runs_on_the_host():
    model = load("ase.calculators.emt:EMT")
    assert isinstance(model, ASECalculatorModel)
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    reference = atoms.copy()
    reference.calc = AseEMT()
    atoms.calc = BatchedCalculator(model, device="cpu")
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=FLOAT64_RTOL)


def test_registered_loaders_get_the_argument_and_options(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", {})
    calls = []

    def loader(*args, **options):
        calls.append((args, options))
        return LennardJones()

    register("mine", loader, description="a test model")
    load("mine", rc=3.0)
    load("mine:some/file.pt", rc=4.0)
    assert calls == [((), {"rc": 3.0}), (("some/file.pt",), {"rc": 4.0})]
    with pytest.raises(ValueError, match="already registered"):
        register("mine", loader)
    with pytest.raises(ValueError, match="lower-case"):
        register("Bad:Name", loader)


def test_entry_points_register_other_packages_models(monkeypatch):
    point = EntryPoint(name="theirs", value="nvalchemi_ase.models.lj:LennardJones", group=ENTRY_POINT_GROUP)

    def fake_entry_points(group):
        return [point] if group == ENTRY_POINT_GROUP else []

    monkeypatch.setattr(registry_module, "entry_points", fake_entry_points)
    assert "theirs" in available()
    model = load("theirs", rc=5.0)
    assert isinstance(model, LennardJones) and model.cutoff == 5.0


def test_a_missing_package_names_the_extra_to_install():
    with pytest.raises(MissingExtraError, match=r"pip install 'nvalchemi-ase\[nothere\]'"):
        require("surely_not_an_installed_package", "nothere", "some-model")
