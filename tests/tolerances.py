"""Every numerical tolerance the tests use, named, in one place."""

FLOAT64_RTOL = 1e-10
"""Relative agreement with ASE's own calculators in float64 (the issue's ~1e-10)."""

FLOAT64_ATOL = 1e-12
"""Absolute floor for values that should be zero (forces at symmetric sites), eV/Å."""

FLOAT32_RTOL = 1e-4
"""Relative agreement of a float32 batch with the float64 reference."""

FINITE_DIFFERENCE_ATOL = 1e-6
"""Central differences with a 1e-5 Å step against analytic forces, eV/Å."""

EXTXYZ_ATOL = 1e-8
"""extxyz stores 8 decimals: positions, momenta and forces read back to this, Å (or the field's unit)."""

ASE_MD_ATOL = 1e-10
"""Positions (Å) and velocities agreeing with ASE's MD classes after ~100 steps in float64."""

BATH_ENERGY_RTOL = 1e-9
"""Bussi's transferred energy and the Nose-Hoover chain energy against ASE's."""

CONSERVED_ENERGY_ATOL = 5e-5
"""A thermostat's conserved quantity over 100 steps of 1 fs, eV: the integrator's error, which the
initial velocities decide more than the noise. For the test's 32 argon atoms heated from 50 K:
over 16 velocity seeds it spans 1.0e-5 to 3.3e-5 (a fifth to a quarter above 2e-5) with either
noise source; with the test's velocity seed it spans 2.1e-5 to 4.6e-5 over 24 noise seeds with the
counter-based source and 2.3e-5 to 4.3e-5 with ASE's numpy streams (both mean 3.2e-5)."""

DEVICE_MATCH_ATOL = 1e-9
"""CUDA against CPU after 30 steps, Å."""

MLIP_ENERGY_PER_ATOM_ATOL = 1e-5
"""eV/atom: a pretrained float32 network against its own ASE calculator. Both run the same float32
weights; the edge vectors differ in the last bits (ours are formed in float64 and cast, theirs in
float32), which moves a per-atom energy of a few eV by ~1e-7 relative, so ~1e-6 eV; 1e-5 leaves room."""

MLIP_FORCES_ATOL = 1e-4
"""eV/Å: the same comparison for forces (gradients of float32 sums over ~50 neighbours, ~1e-6 seen)."""

MLIP_STRESS_ATOL = 1e-5
"""eV/Å³ (1.6 MPa): the same comparison for stress (~1e-7 seen)."""

CELL_FILTER_ATOL = 1e-10
"""Our cell-filter maps (matrix log included) against ``ase.filters``, Å or eV/Å."""
