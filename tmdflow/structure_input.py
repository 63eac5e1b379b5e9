"""Starting geometries from a user's structure file (CIF, POSCAR, anything ASE reads).

The file must hold a 2H MX2: a D3h monolayer (P-6m2, 3 atoms, any vacuum) or the 2H bulk
(P6_3/mmc, 6 atoms).  Only the parameters tmdflow's builders need are taken from it —
monolayer a and d, bulk a, c and z — so the calculation cell is always tmdflow's canonical one
(the preset's vacuum, the standard atom order and origin).  Anything else is refused with the
reason, before any calculation.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .materials import parse_formula
from .structures import BULK_SPACEGROUP, MONOLAYER_SPACEGROUP


@dataclass(frozen=True)
class UserGeometry:
    formula: str
    dimensionality: str  # monolayer | bulk
    a: float
    d: float
    c: float | None = None
    z: float | None = None
    source: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def read_geometry(path: Path) -> UserGeometry:
    from ase.io import read

    path = Path(path)
    if not path.is_file():
        raise InputError(f"structure file {path} not found", "give the path of a CIF or POSCAR file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            atoms = read(path)
    except Exception as exc:  # ASE raises many kinds for unreadable files
        raise InputError(f"cannot read {path} as a structure ({type(exc).__name__}: {exc})",
                         "give a CIF or a VASP POSCAR file") from None
    symbols = atoms.get_chemical_symbols()
    metals = sorted({s for s in symbols if s in ("Cr", "Mo", "W")})
    chalcogens = sorted({s for s in symbols if s in ("S", "Se", "Te")})
    if len(metals) != 1 or len(chalcogens) != 1 or len(metals) + len(chalcogens) != len(set(symbols)):
        raise InputError(f"{path}: elements {sorted(set(symbols))} are not one M (Cr, Mo, W) and one X (S, Se, Te)",
                         "tmdflow computes MX2 only")
    m, x = metals[0], chalcogens[0]
    formula = f"{m}{x}2"
    parse_formula(formula)
    if symbols.count(x) != 2 * symbols.count(m):
        raise InputError(f"{path}: composition {m}{symbols.count(m)}{x}{symbols.count(x)} is not MX2", "check the file")
    import spglib

    cell = (atoms.cell[:], atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = spglib.get_symmetry_dataset(cell, symprec=1e-3)
    number = int(ds.number if hasattr(ds, "number") else ds["number"])
    n_m = symbols.count(m)
    if number == MONOLAYER_SPACEGROUP and n_m == 1:
        cellpar = atoms.cell.cellpar()
        if not (abs(cellpar[0] - cellpar[1]) < 1e-3 and (abs(cellpar[5] - 120) < 0.1 or abs(cellpar[5] - 60) < 0.1)):
            raise InputError(f"{path}: the in-plane lattice is not hexagonal ({cellpar})",
                             "give the primitive hexagonal cell (a = b, gamma = 120)")
        z = atoms.get_scaled_positions()[:, 2]
        zm = z[symbols.index(m)]
        # nearest image along c: a layer may straddle the cell boundary
        dz = [abs(((zz - zm + 0.5) % 1.0) - 0.5) * atoms.cell[2, 2] for zz, s in zip(z, symbols) if s == x]
        # a layer lying in the a-b plane: the chalcogens sit above and below the metal
        if abs(dz[0] - dz[1]) > 1e-3 or np.linalg.norm(atoms.cell[2, :2]) > 1e-6:
            raise InputError(f"{path}: the layer is not in the a-b plane with c along z",
                             "orient the monolayer with its normal along the third cell vector")
        return UserGeometry(formula, "monolayer", float(cellpar[0]), float(np.mean(dz)), source=str(path))
    if number == BULK_SPACEGROUP and n_m == 2:
        cellpar = atoms.cell.cellpar()
        c = float(cellpar[2])
        z = atoms.get_scaled_positions()[:, 2]
        zm = z[symbols.index(m)]
        dz = min(abs(((zz - zm + 0.5) % 1.0) - 0.5) for zz, s in zip(z, symbols) if s == x)
        return UserGeometry(formula, "bulk", float(cellpar[0]), float(dz * c), c=c, z=float(dz), source=str(path))
    raise InputError(
        f"{path}: {formula} with {len(atoms)} atoms in space group {number} is neither a D3h monolayer "
        f"(No. {MONOLAYER_SPACEGROUP}, 3 atoms) nor 2H bulk (No. {BULK_SPACEGROUP}, 6 atoms)",
        "tmdflow studies the 2H polytype; give its primitive cell (1T/1T' and supercells are not supported)",
    )
