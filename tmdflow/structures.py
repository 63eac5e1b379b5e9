"""2H bulk (P6_3/mmc, No. 194) and D3h monolayer (P-6m2, No. 187) MX2 cells.

Conventions (docs/physics.md): hexagonal cell a1 = (a, 0, 0), a2 = (-a/2, a*sqrt(3)/2, 0), a3 = c z^;
the monolayer has the metal at fractional (0, 0, 1/2) and the chalcogens at (1/3, 2/3, 1/2 +- d/c);
``vacuum`` is the empty gap between the outer chalcogen planes of periodic images, c = 2d + vacuum.
Bulk 2H: M on Wyckoff 2c (1/3, 2/3, 1/4), X on 4f with vertical M-X offset z*c.
"""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms

from .errors import InputError, StructureSymmetryError
from .materials import parse_formula

MONOLAYER_SPACEGROUP = 187  # P-6m2, D3h, no inversion
BULK_SPACEGROUP = 194  # P6_3/mmc, D6h
MIN_VACUUM = 10.0  # Angstrom
MAX_VACUUM = 100.0  # Angstrom
DEFAULT_VACUUM = 30.0  # Angstrom, as in Zhu et al. (2011)
SYMPREC = 1e-4

# Geometry bounds (Angstrom): name -> (lowest, highest, why).  Wide enough for strained or
# relaxed MX2 cells, narrow enough to catch a unit slip (bohr, nm) before pw.x runs.
GEOMETRY_BOUNDS = {
    "a": (2.0, 6.0, "in-plane lattice constant; the MX2 have 3.0-3.7 A (bohr or nm given as A?)"),
    "d": (0.5, 3.0, "vertical M-X separation; 1.5-1.9 A in the MX2"),
    "c": (5.0, 60.0, "2H bulk c (two layers); 12-14 A in the MX2"),
    "vacuum": (MIN_VACUUM, MAX_VACUUM, "below 10 A periodic images of the layer interact; above 100 A the FFT grid "
                                       "grows for nothing (Delta at K is converged at 15 A)"),
}


def hexagonal_cell(a: float, c: float) -> np.ndarray:
    return np.array([[a, 0.0, 0.0], [-a / 2, a * np.sqrt(3) / 2, 0.0], [0.0, 0.0, c]])


def _positive(name: str, value: float) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}", f"give {name} in Angstrom") from None
    if not np.isfinite(value) or value <= 0:
        raise InputError(f"{name} must be positive, got {value}", f"give a positive {name} in Angstrom")
    return value


def _in_bounds(name: str, value: float) -> float:
    lo, hi, why = GEOMETRY_BOUNDS[name]
    if not lo <= value <= hi:
        raise InputError(f"{name} = {value:g} A is outside the allowed range {lo:g} <= {name} <= {hi:g} A ({why})",
                         f"give {name} in Angstrom within that range")
    return value


def check_geometry(a: float | None = None, d: float | None = None, vacuum: float | None = None,
                   c: float | None = None) -> None:
    """Refuse a given lattice constant, M-X height, vacuum or bulk c that is not a finite number
    inside :data:`GEOMETRY_BOUNDS` (None: not given, nothing to check) -- before anything runs."""
    for name, value in (("a", a), ("d", d), ("c", c)):
        if value is not None:
            _in_bounds(name, _positive(name, value))
    if vacuum is not None:
        vacuum = _positive("vacuum", vacuum)
        if vacuum < MIN_VACUUM:
            raise InputError(
                f"vacuum {vacuum} A is below {MIN_VACUUM} A: periodic images of the layer would interact",
                f"use vacuum >= {MIN_VACUUM} A (the paper uses {DEFAULT_VACUUM} A)",
            )
        _in_bounds("vacuum", vacuum)


def spacegroup_number(atoms: Atoms, symprec: float = SYMPREC) -> int:
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():  # spglib 2.5 warns about its own error-handling switch
        warnings.simplefilter("ignore", DeprecationWarning)
        dataset = spglib.get_symmetry_dataset(cell, symprec=symprec)
    if dataset is None:
        raise StructureSymmetryError("spglib could not analyse the structure", "check the geometry")
    return int(dataset.number if hasattr(dataset, "number") else dataset["number"])


def check_spacegroup(atoms: Atoms, expected: int, what: str) -> None:
    found = spacegroup_number(atoms)
    if found != expected:
        raise StructureSymmetryError(
            f"{what} has space group No. {found}, expected No. {expected}",
            "check the lattice parameters and positions (a 2H MX2 needs an ideal trigonal prism)",
        )


def build_monolayer(formula: str, a: float, d: float, vacuum: float = DEFAULT_VACUUM) -> Atoms:
    """D3h (P-6m2) MX2 monolayer with in-plane lattice constant ``a`` and M-X height ``d``."""
    metal, chalcogen = parse_formula(formula)
    a, d = _positive("a", a), _positive("d", d)
    vacuum = _positive("vacuum", vacuum)
    if d > a:
        raise InputError(f"M-X height d = {d} A exceeds a = {a} A", "check a and d (d ~ 1.6 A, a ~ 3.2 A)")
    check_geometry(a=a, d=d, vacuum=vacuum)
    c = 2 * d + vacuum
    atoms = Atoms(
        symbols=[metal, chalcogen, chalcogen],
        scaled_positions=[[0, 0, 0.5], [1 / 3, 2 / 3, 0.5 + d / c], [1 / 3, 2 / 3, 0.5 - d / c]],
        cell=hexagonal_cell(a, c),
        pbc=(True, True, True),
    )
    check_spacegroup(atoms, MONOLAYER_SPACEGROUP, f"{metal}{chalcogen}2 monolayer")
    return atoms


def build_bulk_2h(formula: str, a: float, c: float, z: float) -> Atoms:
    """2H (P6_3/mmc) bulk MX2; ``z`` is the vertical M-X offset in units of c (Zhu et al. Table I)."""
    metal, chalcogen = parse_formula(formula)
    a, c, z = _positive("a", a), _positive("c", c), _positive("z", z)
    check_geometry(a=a, c=c)
    if not z < 0.25:
        raise InputError(f"z = {z} must be below 0.25 (layers would overlap)", "z ~ 0.13 for 2H MX2")
    atoms = Atoms(
        symbols=[metal, metal] + [chalcogen] * 4,
        scaled_positions=[
            [1 / 3, 2 / 3, 0.25],
            [2 / 3, 1 / 3, 0.75],
            [2 / 3, 1 / 3, 0.25 + z],
            [2 / 3, 1 / 3, 0.25 - z],
            [1 / 3, 2 / 3, 0.75 + z],
            [1 / 3, 2 / 3, 0.75 - z],
        ],
        cell=hexagonal_cell(a, c),
        pbc=True,
    )
    check_spacegroup(atoms, BULK_SPACEGROUP, f"2H-{metal}{chalcogen}2 bulk")
    return atoms


def monolayer_height(atoms: Atoms) -> float:
    """Vertical M-X separation d (Angstrom) of a monolayer cell."""
    z = atoms.positions[:, 2]
    metal_z = z[0]
    return float(np.mean(np.abs(z[1:] - metal_z)))


def vacuum_of(atoms: Atoms) -> float:
    z = atoms.positions[:, 2]
    return float(atoms.cell[2, 2] - (z.max() - z.min()))
