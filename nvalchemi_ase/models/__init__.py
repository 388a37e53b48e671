"""Batched models: the protocol, LJ, Morse and EMT equal to ASE's, an adapter for any ASE calculator,
``AutogradModel`` for torch energy modules, and pretrained potentials by name (:func:`load`)."""

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
from nvalchemi_ase.models.registry import MissingExtraError, UnknownModelError, available, load, register

__all__ = [
    "DEFAULT_PROPERTIES",
    "EMT",
    "ASECalculatorModel",
    "AtomGraph",
    "AutogradModel",
    "BatchedModel",
    "LennardJones",
    "MissingExtraError",
    "Model",
    "ModelOutputError",
    "Morse",
    "PairPotential",
    "UnknownModelError",
    "available",
    "evaluate",
    "load",
    "register",
]
