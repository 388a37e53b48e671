"""Constant-pressure MD of many crystals at once, each at its own pressure, with ASE's MTK barostat.

The ASE version reads the same but for one import::

    from ase.md.nose_hoover_chain import IsotropicMTKNPT            # ASE
    from nvalchemi_ase.md.nose_hoover_chain import IsotropicMTKNPT  # batched

``pressure_au`` (eV/Å³), ``temperature_K``, ``tdamp`` and ``pdamp`` (ASE time
units) take one value per system for a list: here argon crystals of two
sizes, squeezed or stretched, run together in one batch. main() prints each
system's volume per atom (the equation of state, sampled) and checks
system 0 against ASE's own ``IsotropicMTKNPT`` on ASE's Lennard-Jones.
The same holds for ``MTKNPT`` (full cell), ``NPTBerendsen``,
``Inhomogeneous_NPTBerendsen`` (``nvalchemi_ase.md.nptberendsen``) and ``NPT``
(``nvalchemi_ase.md.npt``).

Run: ``python examples/npt_pressures.py --steps 200``.
"""

from __future__ import annotations

import argparse

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.nose_hoover_chain import IsotropicMTKNPT as AseIsotropicMTKNPT

from nvalchemi_ase import BatchedCalculator
from nvalchemi_ase.md.nose_hoover_chain import IsotropicMTKNPT  # the one changed import
from nvalchemi_ase.models import LennardJones

ARGON = {"sigma": 3.4, "epsilon": 0.0104, "rc": 8.5, "smooth": True}
PRESSURES_GPA = [-0.05, 0.0, 0.1, 0.5]


def crystals(count: int) -> list[Atoms]:
    """Argon crystals of 32 and 108 atoms, alternating, with 40 K velocities."""
    systems = []
    for k in range(count):
        atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2 + k % 2)
        kT = 40.0 * units.kB
        noise = np.random.default_rng(k).normal(size=(len(atoms), 3))
        atoms.set_momenta(noise * np.sqrt(kT * atoms.get_masses())[:, None])
        systems.append(atoms)
    return systems


def main(argv: list[str] | None = None) -> list[float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    systems = crystals(len(PRESSURES_GPA))
    reference = systems[0].copy()
    calc = BatchedCalculator(LennardJones(**ARGON), device=args.device)
    for atoms in systems:
        atoms.calc = calc
    pressures = [p * units.GPa for p in PRESSURES_GPA]
    options = {"temperature_K": 40.0, "tdamp": 50 * units.fs, "pdamp": 500 * units.fs}
    dyn = IsotropicMTKNPT(systems, 2 * units.fs, pressure_au=pressures, **options)
    dyn.run(args.steps)
    volumes = [atoms.get_volume() / len(atoms) for atoms in systems]
    for pressure, volume in zip(PRESSURES_GPA, volumes, strict=True):
        print(f"P = {pressure:5.2f} GPa   V = {volume:7.3f} Å³/atom")

    reference.calc = AseLennardJones(**ARGON)
    AseIsotropicMTKNPT(reference, 2 * units.fs, pressure_au=pressures[0], **options).run(args.steps)
    difference = float(np.abs(reference.positions - systems[0].positions).max())
    print(f"system 0 against ASE's IsotropicMTKNPT: {difference:.1e} Å")
    return [*volumes, difference]


if __name__ == "__main__":
    main()
