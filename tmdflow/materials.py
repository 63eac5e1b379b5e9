"""MX2 material data (from ``inputs/materials.yaml``) and formula validation."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .data import load_yaml
from .errors import InputError


@dataclass(frozen=True)
class BulkParameters:
    a: float  # Angstrom
    c: float  # Angstrom
    z: float  # vertical M-X offset in units of c
    d: float  # Angstrom (= z * c within rounding)


@dataclass(frozen=True)
class MonolayerParameters:
    a: float  # Angstrom
    d: float  # Angstrom, vertical M-X separation


@dataclass(frozen=True)
class Material:
    formula: str
    metal: str
    chalcogen: str
    bulk: BulkParameters | None
    monolayer: MonolayerParameters | None
    source: str

    @property
    def elements(self) -> tuple[str, str]:
        return (self.metal, self.chalcogen)


def _element_table() -> dict:
    return load_yaml("materials.yaml")["elements"]


def allowed_metals() -> list[str]:
    return list(_element_table()["metals"])


def allowed_chalcogens() -> list[str]:
    return list(_element_table()["chalcogens"])


def atomic_mass(symbol: str) -> float:
    masses = _element_table()["masses"]
    if symbol not in masses:
        raise InputError(f"no mass for element '{symbol}'", "add it to inputs/materials.yaml")
    return float(masses[symbol])


def parse_formula(formula: str) -> tuple[str, str]:
    """'MoS2' -> ('Mo', 'S'); refuses anything that is not M X2 with supported M, X."""
    m = re.fullmatch(r"\s*([A-Z][a-z]?)([A-Z][a-z]?)2\s*", formula or "")
    metals, chalcogens = allowed_metals(), allowed_chalcogens()
    if not m:
        raise InputError(
            f"'{formula}' is not an MX2 formula",
            f"write e.g. MoS2: M in {metals}, X in {chalcogens}",
        )
    metal, chalcogen = m.groups()
    if metal not in metals:
        raise InputError(
            f"unsupported or unknown metal '{metal}' in '{formula}'",
            f"tmdflow supports M in {metals}",
        )
    if chalcogen not in chalcogens:
        raise InputError(
            f"unsupported or unknown chalcogen '{chalcogen}' in '{formula}'",
            f"tmdflow supports X in {chalcogens}",
        )
    return metal, chalcogen


def get_material(formula: str) -> Material:
    metal, chalcogen = parse_formula(formula)
    formula = f"{metal}{chalcogen}2"
    entry = load_yaml("materials.yaml")["materials"].get(formula)
    if entry is None:
        return Material(formula, metal, chalcogen, None, None, source="none")
    bulk = BulkParameters(**entry["bulk"]) if "bulk" in entry else None
    mono = MonolayerParameters(**entry["monolayer"]) if "monolayer" in entry else None
    return Material(formula, metal, chalcogen, bulk, mono, source=entry.get("source", ""))


def known_formulas() -> list[str]:
    return list(load_yaml("materials.yaml")["materials"])
