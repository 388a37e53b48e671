"""Batched models: the protocol, LJ and Morse equal to ASE's, and an adapter for any ASE calculator."""

from __future__ import annotations

from nvalchemi_ase.models.ase_adapter import ASECalculatorModel
from nvalchemi_ase.models.autograd import AtomGraph, AutogradModel
from nvalchemi_ase.models.base import (
    DEFAULT_PROPERTIES,
    BatchedModel,
    Model,
    ModelOutputError,
    evaluate,
)
from nvalchemi_ase.models.emt import EMT
from nvalchemi_ase.models.lj import LennardJones
from nvalchemi_ase.models.morse import Morse
from nvalchemi_ase.models.pair import PairPotential

__all__ = [
    "DEFAULT_PROPERTIES",
    "EMT",
    "ASECalculatorModel",
    "AtomGraph",
    "AutogradModel",
    "BatchedModel",
    "LennardJones",
    "Model",
    "ModelOutputError",
    "Morse",
    "PairPotential",
    "evaluate",
]
