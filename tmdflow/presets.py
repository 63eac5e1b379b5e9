"""Calculation presets as data: inputs/presets/base.yaml < <preset>.yaml < user overrides."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from .data import inputs_dir, load_yaml
from .errors import InputError
from .pseudo.recipes import available_families, load_family
from .structures import MIN_VACUUM

SPIN_ORBIT_MODES = ("scf", "second_variational")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    pseudo_family: str
    element_pseudo_families: dict[str, str]  # element -> family replacing pseudo_family for it (e.g. {Se: ...})
    spin_orbit_mode: str
    ecutwfc: float
    ecutrho: float
    kmesh: int
    kmesh_bulk_kz: int
    vacuum: float
    relax_vacuum: float | None  # monolayer relax step: vacuum of its cell (A); None = vacuum
    relax_ecutwfc: float | None  # monolayer relax step (variable cell): cut-off floors (Ry); cell_relax_cutoffs()
    relax_ecutrho: float | None
    relax_forc_conv_thr: float  # relax steps: forces below this, Ry/bohr (pw.x forc_conv_thr)
    relax_press_conv_thr: float  # monolayer vc-relax: in-plane stress components of the relaxation cell below this, kbar
    relax_stress_zz_thr: float | None  # monolayer vc-relax: |sigma_zz| of the slab at the end (its Pulay error), kbar
    relax_cutoff_step: float  # ... above it the relaxation is repeated at ecutwfc + this (Ry), same dual
    relax_cutoff_raises: int  # ... at most this many times (0: fail at once)
    conv_thr: float
    nscf_diago_thr: float  # Davidson threshold of the non-SCF (bands) runs, Ry (docs/performance.md)
    diago_david_ndim: int  # Davidson working-space size (pw.x's own default: 2)
    mixing_beta: float
    mixing_mode: str
    electron_maxstep: int
    occupations: str
    smearing: str
    degauss: float
    extra_bands: int
    path_points: int
    spin_texture: bool
    phonon_supercell: int  # phonons step: n x n x 1 supercell
    phonon_displacement: float  # Angstrom
    map_points: int  # splitting map (soc_map step): N x N grid of the zone, irreducible wedge computed
    # WIEN2k (calculator: wien2k) -- the paper's LAPW settings; ignored by Quantum ESPRESSO
    wien2k_rmt: float
    wien2k_rkmax: float
    wien2k_lmax: int
    wien2k_ecut: float
    wien2k_ec: float
    wien2k_cc: float
    wien2k_fc: float
    wien2k_max_iterations: int
    wien2k_so_emax: float
    wien2k_scan_step: float
    wien2k_scan_points: int

    def __post_init__(self) -> None:
        if self.pseudo_family not in available_families():
            raise InputError(
                f"pseudo_family '{self.pseudo_family}' has no recipe file in inputs/pseudo_recipes/ "
                f"(available: {', '.join(available_families())})",
                "use one of the available families, or add inputs/pseudo_recipes/<name>.yaml",
            )
        for element, family in self.element_pseudo_families.items():
            if family not in available_families():
                raise InputError(
                    f"element_pseudo_families: {element} -> '{family}' has no recipe file in "
                    f"inputs/pseudo_recipes/ (available: {', '.join(available_families())})",
                    "use one of the available families for that element",
                )
            if element not in load_family(family):
                raise InputError(
                    f"element_pseudo_families: family '{family}' has no recipe for '{element}' "
                    f"(it has {', '.join(sorted(load_family(family)))})",
                    "use an element symbol the family has (case matters: Se, not se)",
                )
        if self.spin_orbit_mode not in SPIN_ORBIT_MODES:
            raise InputError(
                f"spin_orbit_mode '{self.spin_orbit_mode}' is not one of {SPIN_ORBIT_MODES}",
                "use scf (self-consistent noncollinear) or second_variational",
            )
        for name in ("ecutwfc", "ecutrho", "conv_thr", "nscf_diago_thr", "mixing_beta",
                     "relax_forc_conv_thr", "relax_press_conv_thr"):
            if getattr(self, name) <= 0:
                raise InputError(f"{name} must be positive, got {getattr(self, name)}", f"fix {name}")
        if self.ecutrho < self.ecutwfc:
            raise InputError(
                f"ecutrho ({self.ecutrho} Ry) is below ecutwfc ({self.ecutwfc} Ry)",
                "use ecutrho >= 4 x ecutwfc (8 x for PAW/ultrasoft)",
            )
        if self.wien2k_scan_points < 3 or self.wien2k_scan_step <= 0:
            raise InputError(
                f"wien2k lattice scan needs >= 3 points and a positive step, got "
                f"{self.wien2k_scan_points} x {self.wien2k_scan_step}",
                "use e.g. wien2k_scan_points: 5, wien2k_scan_step: 0.01 (1 % of a)",
            )
        if self.relax_vacuum is not None and self.relax_vacuum < MIN_VACUUM:
            raise InputError(f"relax_vacuum {self.relax_vacuum} A is below {MIN_VACUUM} A: periodic images of "
                             "the layer would interact during the relaxation",
                             f"use relax_vacuum >= {MIN_VACUUM} (e.g. 15), or null to relax in the preset's vacuum")
        if (self.relax_ecutwfc is None) != (self.relax_ecutrho is None):
            raise InputError("relax_ecutwfc and relax_ecutrho must be given together",
                             "set both (e.g. 60 and 480 Ry), or both null to relax at ecutwfc/ecutrho")
        if self.relax_ecutwfc is not None and (self.relax_ecutwfc <= 0 or self.relax_ecutrho < self.relax_ecutwfc):
            raise InputError(f"relax cut-offs {self.relax_ecutwfc}/{self.relax_ecutrho} Ry: need 0 < relax_ecutwfc "
                             "<= relax_ecutrho", "use e.g. 60 and 480 Ry (8 x for PAW)")
        if self.relax_stress_zz_thr is not None and self.relax_stress_zz_thr <= 0:
            raise InputError(f"relax_stress_zz_thr must be positive, got {self.relax_stress_zz_thr}",
                             "use e.g. 0.5 (kbar, like relax_press_conv_thr), or null in a preset file to skip the check")
        if self.relax_cutoff_step <= 0 or self.relax_cutoff_raises < 0:
            raise InputError(f"relax_cutoff_step {self.relax_cutoff_step} Ry / relax_cutoff_raises "
                             f"{self.relax_cutoff_raises}: need a positive step and >= 0 raises",
                             "use e.g. relax_cutoff_step: 20 and relax_cutoff_raises: 2 (0 = fail instead of raising)")
        if self.diago_david_ndim < 2:
            raise InputError(f"diago_david_ndim must be >= 2, got {self.diago_david_ndim}",
                             "use 2 (pw.x's default, least memory) or 4 (faster bands runs)")
        if self.kmesh < 1 or self.kmesh_bulk_kz < 1:
            raise InputError(f"k-mesh must be >= 1, got {self.kmesh}", "use e.g. kmesh: 6")

    def pseudo_family_for(self, element: str) -> str:
        """The recipe family ``element``'s pseudopotentials come from."""
        return self.element_pseudo_families.get(element, self.pseudo_family)

    def pseudo_families_for(self, elements) -> dict[str, str]:
        """element -> recipe family for the elements of one material."""
        return {el: self.pseudo_family_for(el) for el in sorted(set(elements))}

    def cell_relax_cutoffs(self) -> tuple[float, float]:
        """(ecutwfc, ecutrho) of a relaxation that moves the cell (the monolayer's a): the stress
        converges more slowly with the basis than energies and forces, so ``relax_ecutwfc`` /
        ``relax_ecutrho`` are floors -- a user who raises ecutwfc/ecutrho relaxes at those."""
        if self.relax_ecutwfc is None:
            return self.ecutwfc, self.ecutrho
        return max(self.ecutwfc, self.relax_ecutwfc), max(self.ecutrho, self.relax_ecutrho)


def _string_mapping(key: str, value: Any) -> dict[str, str]:
    """A preset value that maps names to names (a fresh dict: YAML data is cached and shared)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InputError(f"preset value {key}={value!r} is not a mapping of names",
                         f"write it as {key}: {{Se: pslibrary-1.0.0-paw}} (or {{}} for none)")
    return dict(value)


def available_presets() -> list[str]:
    return sorted(p.stem for p in (inputs_dir() / "presets").glob("*.yaml") if p.stem != "base")


def load_preset(name: str, overrides: Mapping[str, Any] | None = None) -> Preset:
    if name not in available_presets():
        raise InputError(f"unknown preset '{name}'", f"choose one of {available_presets()}")
    values: dict[str, Any] = dict(load_yaml("presets/base.yaml"))
    values.update(load_yaml(f"presets/{name}.yaml"))
    values.setdefault("description", "")
    valid = {f.name for f in dataclasses.fields(Preset)}
    for key, val in (overrides or {}).items():
        if key not in valid:
            raise InputError(f"unknown preset parameter '{key}'", f"valid: {sorted(valid - {'name'})}")
        if val is not None:
            values[key] = val
    values["name"] = name
    unknown = set(values) - valid
    if unknown:
        raise InputError(f"preset '{name}' has unknown keys {sorted(unknown)}", "fix inputs/presets/")
    types = {f.name: f.type for f in dataclasses.fields(Preset)}
    coerced = {}
    for key, val in values.items():
        t = types[key]
        if t.endswith(" | None") and val is None:
            coerced[key] = None
            continue
        if t == "dict[str, str]":
            coerced[key] = _string_mapping(key, val)
            continue
        try:
            coerced[key] = {"float": float, "int": int, "bool": bool, "str": str}[t.removesuffix(" | None")](val)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"preset value {key}={val!r} has the wrong type ({t})", "fix it") from None
    return Preset(**coerced)
