"""Pretrained machine-learned potentials by name: SevenNet, CHGNet and MACE adapters.

Each family's package is an optional extra, imported only when one of its
names is loaded.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from nvalchemi_ase.models.base import Model
from nvalchemi_ase.models.registry import ModelEntry


def _sevennet(*args: Any, name: str, **options: Any) -> Model:
    from nvalchemi_ase.models.pretrained.sevennet import load_sevennet

    return load_sevennet(*args, name=name, **options)


def _chgnet(*args: Any, name: str, **options: Any) -> Model:
    from nvalchemi_ase.models.pretrained.chgnet import load_chgnet

    return load_chgnet(*args, name=name, **options)


def _mace(*args: Any, name: str, **options: Any) -> Model:
    from nvalchemi_ase.models.pretrained.mace import load_mace

    return load_mace(*args, name=name, **options)


def pretrained_entries() -> list[ModelEntry]:
    """Our pretrained names, each with the extra it needs."""
    sevennet = [
        ModelEntry(
            name, partial(_sevennet, name=name), f"SevenNet checkpoint {name} (shipped with sevenn)", "sevenn"
        )
        for name in ("7net-0", "7net-0_11jul2024", "7net-0_22may2024", "7net-l3i5")
    ]
    sevennet.append(
        ModelEntry(
            "7net",
            partial(_sevennet, name="7net"),
            "7net:<checkpoint.pth>, a SevenNet checkpoint file",
            "sevenn",
        )
    )
    chgnet = [
        ModelEntry(
            "chgnet",
            partial(_chgnet, name="chgnet"),
            "CHGNet 0.3.0 (shipped with chgnet); chgnet:<file> for another",
            "chgnet",
        ),
        ModelEntry(
            "chgnet-0.3.0",
            partial(_chgnet, name="chgnet-0.3.0"),
            "CHGNet 0.3.0 (shipped with chgnet)",
            "chgnet",
        ),
        ModelEntry(
            "chgnet-0.2.0",
            partial(_chgnet, name="chgnet-0.2.0"),
            "CHGNet 0.2.0 (shipped with chgnet)",
            "chgnet",
        ),
        ModelEntry(
            "chgnet-r2scan",
            partial(_chgnet, name="chgnet-r2scan"),
            "CHGNet r2SCAN (shipped with chgnet)",
            "chgnet",
        ),
    ]
    mace = [
        ModelEntry("mace", partial(_mace, name="mace"), "mace:<file.model>, a MACE model file", "mace"),
    ]
    mace += [
        ModelEntry(
            name, partial(_mace, name=name), f"MACE foundation model {name} (mace downloads it)", "mace"
        )
        for name in (
            "mace-mp-small",
            "mace-mp-medium",
            "mace-mp-large",
            "mace-off-small",
            "mace-off-medium",
            "mace-off-large",
        )
    ]
    return [*sevennet, *chgnet, *mace]
