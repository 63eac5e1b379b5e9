"""Calculation presets as data: inputs/presets/base.yaml < <preset>.yaml < user overrides.

:class:`Preset` is the schema of that data: every key's type and allowed range is declared once,
on its field (``Field(ge=..., le=..., description=<why>)``), and checked whenever a preset is
built -- by :func:`load_preset` at submit and at compute, and by ``dataclasses.replace`` inside
the steps -- before pw.x runs or the store is touched.  Types are strict (no bool or float taken
for an int, no string for a bool, no NaN or infinity) and string values are enumerations from
Quantum ESPRESSO 6.7's INPUT_PW, so no free text reaches a pw.x input.  Field validators check
the named recipe files; the rules between values (the dual, the relaxation cut-offs, the slab
stress ladder) are checked once the fields are valid.  A bad value raises
:class:`~tmdflow.errors.InputError` naming the key(s) (``err.keys``), the value, the allowed range
and the fix.  Everything said about a key (type, range, unit, why, fix) is read back from the
model's JSON schema (:func:`schema`): docs/user-guide.md ("Validation bounds") lists the table
:func:`bounds_table` makes from it.
"""

from __future__ import annotations

import dataclasses
from functools import cache
from typing import Annotated, Any, Literal, Mapping

from pydantic import BeforeValidator, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, \
    model_validator
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from .data import inputs_dir, load_yaml
from .errors import InputError
from .pseudo.recipes import available_families, load_family
from .structures import MAX_VACUUM, MIN_VACUUM

SPIN_ORBIT_MODES = ("scf", "second_variational")
#: how the Elk relaxation sets a monolayer's height d (docs/elk.md, "Relaxation")
ELK_RELAX_HEIGHTS = ("forces", "energy")
# QE 6.7 INPUT_PW, &SYSTEM smearing (the aliases pw.x accepts, lower case as documented)
SMEARINGS = ("gaussian", "gauss", "methfessel-paxton", "m-p", "mp", "marzari-vanderbilt", "cold", "m-v", "mv",
             "fermi-dirac", "f-d", "fd")
# QE 6.7 INPUT_PW, &ELECTRONS mixing_mode (case-sensitive in pw.x)
MIXING_MODES = ("plain", "TF", "local-TF")
# QE 6.7 INPUT_PW, &SYSTEM occupations, less those tmdflow's runs cannot use: 'from_input' needs an
# OCCUPATIONS card (never written) and the 'tetrahedra*' methods need an automatic k mesh, while
# every bands run reads an explicit k list
OCCUPATIONS = ("smearing", "fixed")

MAX_ECUTWFC = 300.0  # Ry
MAX_ECUTRHO = 2400.0  # Ry (8 x MAX_ECUTWFC, the PAW/ultrasoft dual)

_ECUTWFC_WHY = ("the TMD pseudopotentials converge at 45-80 Ry (docs/physics.md); below 10 Ry no basis "
                "holds a d shell, above 300 Ry the basis of a slab outgrows a node's memory (an eV or "
                "Hartree value given as Ry?)")
_ECUTRHO_WHY = ("4 x ecutwfc for norm-conserving, 8 x for PAW; above 2400 Ry (8 x 300) the density FFT grid "
                "of a slab outgrows a node's memory")
_RELAX_LADDER_FIX = ("relax_cutoff_step / relax_cutoff_raises: need a positive step and >= 0 raises; use e.g. "
                     "relax_cutoff_step: 20 and relax_cutoff_raises: 2 (0 = fail instead of raising)")
_RELAX_CUTOFF_FIX = "need 0 < relax_ecutwfc <= relax_ecutrho: set both, e.g. 60 and 480 Ry (8 x for PAW), or both null"
_WIEN2K_SCAN_FIX = "the wien2k lattice scan needs >= 3 points and a positive step: use e.g. wien2k_scan_points: 5, " \
                   "wien2k_scan_step: 0.01 (1 % of a)"


def _bound(*, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None,
           multiple_of: int | None = None, unit: str = "", why: str, fix: str | None = None) -> Any:
    """A preset field's allowed range with the reason for it (and, where it helps, the fix)."""
    extra: dict[str, Any] = {"unit": unit}
    if fix:
        extra["fix"] = fix
    return Field(ge=ge, gt=gt, le=le, lt=lt, multiple_of=multiple_of, description=why, json_schema_extra=extra)


def _about(why: str, fix: str | None = None) -> Any:
    """A preset field without a numeric range (enumerations, booleans, names): why, fix."""
    return Field(description=why, json_schema_extra={"fix": fix} if fix else {})


def _rule_broken(problem: str, fix: str, *keys: str) -> PydanticCustomError:
    """A key's value names a file that lacks what it needs: the error ``_input_error`` reports as
    written, naming ``keys``."""
    return PydanticCustomError("preset_rule", "{problem}", {"problem": problem, "fix": fix, "keys": ",".join(keys)})


def _inconsistent(problem: str, fix: str, *keys: str) -> InputError:
    """A rule between preset values broken, naming the ``keys`` involved."""
    error = InputError(problem, fix)
    error.keys = list(keys)
    return error


#: preset files write ``null`` (or nothing) for "no per-element families"
NameMapping = Annotated[dict[str, str], BeforeValidator(lambda value: {} if value is None else value)]

PRESET_CONFIG = ConfigDict(strict=True, allow_inf_nan=False)


@dataclass(frozen=True, config=PRESET_CONFIG)
class Preset:
    name: str = _about("the preset file's name (inputs/presets/<name>.yaml)")
    description: str = _about("one line shown by 'tmdflow presets'; never written to a pw.x input")
    pseudo_family: str = _about("a recipe file inputs/pseudo_recipes/<family>.yaml")
    # element -> family replacing pseudo_family for it (e.g. {Se: ...})
    element_pseudo_families: NameMapping = _about("element -> recipe family replacing pseudo_family for it",
                                                  "write it as element_pseudo_families: {Se: pslibrary-1.0.0-paw} "
                                                  "(or {} for none)")
    spin_orbit_mode: Literal[SPIN_ORBIT_MODES] = _about(
        "scf: self-consistent noncollinear spin-orbit; second_variational: the paper's method",
        "use scf (self-consistent noncollinear) or second_variational")
    ecutwfc: float = _bound(ge=10.0, le=MAX_ECUTWFC, unit="Ry", why=_ECUTWFC_WHY)
    ecutrho: float = _bound(ge=40.0, le=MAX_ECUTRHO, unit="Ry", why=_ECUTRHO_WHY,
                            fix="use ecutrho >= 4 x ecutwfc (8 x for PAW/ultrasoft)")
    kmesh: int = _bound(ge=1, le=48, why="Gamma-centred n x n x 1 SCF mesh; 16 converges Delta at K to 0.1 meV; "
                                         "48 x 48 is 2304 k-points, beyond it pw.x's memory explodes (kmesh 100000 "
                                         "asked for 34 GB)", fix="use e.g. kmesh: 6 (quick) or 16 (paper)")
    kmesh_bulk_kz: int = _bound(ge=1, le=16, why="k-points along z for bulk (c ~ 12 A: 3 converge); beyond 16 only cost")
    vacuum: float = _bound(ge=MIN_VACUUM, le=MAX_VACUUM, unit="A",
                           why="below 10 A periodic images of the layer interact; Delta is converged at 15 A, above "
                               "100 A the FFT grid grows for nothing",
                           fix=f"use vacuum >= {MIN_VACUUM} A (the paper uses 30 A)")
    # monolayer relax step: vacuum of its cell (A); None = vacuum
    relax_vacuum: float | None = _bound(ge=MIN_VACUUM, le=MAX_VACUUM, unit="A",
                                        why="as vacuum, for the monolayer relaxation cell (null: vacuum)",
                                        fix=f"use relax_vacuum >= {MIN_VACUUM} (e.g. 15), or null to relax in the "
                                            "preset's vacuum")
    # monolayer relax step (variable cell): cut-off floors (Ry); cell_relax_cutoffs()
    relax_ecutwfc: float | None = _bound(ge=10.0, le=MAX_ECUTWFC, unit="Ry", why="as ecutwfc (null: ecutwfc)",
                                         fix=_RELAX_CUTOFF_FIX)
    relax_ecutrho: float | None = _bound(ge=40.0, le=MAX_ECUTRHO, unit="Ry", why="as ecutrho (null: ecutrho)",
                                         fix=_RELAX_CUTOFF_FIX)
    # relax steps: forces below this, Ry/bohr (pw.x forc_conv_thr)
    relax_forc_conv_thr: float = _bound(gt=0.0, le=0.1, unit="Ry/bohr",
                                        why="pw.x forc_conv_thr; the paper's 5e-4; above 0.1 Ry/bohr (2.6 eV/A) "
                                            "nothing relaxes")
    # monolayer vc-relax: in-plane stress components of the relaxation cell below this, kbar
    relax_press_conv_thr: float = _bound(gt=0.0, le=50.0, unit="kbar",
                                         why="pw.x press_conv_thr; 0.5 kbar leaves a within 0.005 A; 50 kbar moves "
                                             "a by ~0.5 A")
    # monolayer vc-relax: |sigma_zz| of the slab at the end (its Pulay error), kbar
    relax_stress_zz_thr: float | None = _bound(gt=0.0, le=50.0, unit="kbar",
                                               why="the slab's sigma_zz (basis-set stress error) allowed at the end "
                                                   "of the relaxation (null in a preset file: no check)",
                                               fix="use e.g. 0.5 (kbar, like relax_press_conv_thr), or null in a "
                                                   "preset file to skip the check")
    # ... above it the relaxation is repeated at ecutwfc + this (Ry), same dual
    relax_cutoff_step: float = _bound(gt=0.0, le=100.0, unit="Ry", why="cut-off raise per rung of the slab stress "
                                                                         "ladder", fix=_RELAX_LADDER_FIX)
    # ... at most this many times (0: fail at once)
    relax_cutoff_raises: int = _bound(ge=0, le=5, why="rungs of the slab stress ladder (each a full relaxation)",
                                      fix=_RELAX_LADDER_FIX)
    conv_thr: float = _bound(ge=1e-14, le=1e-3, unit="Ry",
                             why="pw.x conv_thr (total energy); below 1e-14 Ry is double-precision noise pw.x "
                                 "cannot reach, above 1e-3 Ry the eigenvalues are not meV-accurate")
    # Davidson threshold of the non-SCF (bands) runs, Ry (docs/performance.md)
    nscf_diago_thr: float = _bound(ge=1e-14, le=1e-4, unit="Ry",
                                   why="pw.x diago_thr_init of the bands runs; 1e-9 gives eigenvalues to 2e-5 meV; "
                                       "above 1e-4 Ry the meV splittings are noise")
    # Davidson working-space size (pw.x's own default: 2)
    diago_david_ndim: int = _bound(ge=2, le=16, why="pw.x needs >= 2 (its default); 4 halves the bands runs' cost; "
                                                    "memory grows with it, no gain beyond 8",
                                   fix="use 2 (pw.x's default, least memory) or 4 (faster bands runs)")
    mixing_beta: float = _bound(ge=1e-4, le=1.0,
                                why="pw.x mixing_beta; the SCF retry halves it (rounded to 1e-4); above 1 the "
                                    "density mixing overshoots")
    mixing_mode: Literal[MIXING_MODES] = _about("pw.x mixing_mode (INPUT_PW, case-sensitive)",
                                                "use plain (default), TF or local-TF")
    electron_maxstep: int = _bound(ge=1, le=10000,
                                   why="pw.x electron_maxstep; 100 is pw.x's default, the SCF retry doubles it (twice)",
                                   fix="use e.g. 100 (an SCF that needs more has a setup problem)")
    occupations: Literal[OCCUPATIONS] = _about(
        "pw.x occupations (INPUT_PW) usable here: 'from_input' needs a card tmdflow does not write, the "
        "tetrahedra methods an automatic k mesh (bands runs use a k list)", "use smearing (default) or fixed")
    smearing: Literal[SMEARINGS] = _about("pw.x smearing (INPUT_PW aliases)",
                                          "use gaussian (default), methfessel-paxton, marzari-vanderbilt or "
                                          "fermi-dirac (or their INPUT_PW aliases)")
    degauss: float = _bound(gt=0.0, le=0.1, unit="Ry",
                            why="pw.x degauss; pw.x refuses 0 with smearing; the TMDs are semiconductors (0.002 Ry); "
                                "above 0.1 Ry (1.4 eV) the occupations smear across the gap")
    extra_bands: int = _bound(ge=1, le=100,
                              why="bands above the highest occupied one (per spinor with SOC): Delta_CB(K) and the "
                                  "gap need the conduction bands; beyond 100 only cost")
    path_points: int = _bound(ge=0, le=1000, why="k-points on Gamma-M-K-Gamma in the bands run (0: only Gamma, K, "
                                                 "K'); the paper preset's 91 draw the figure")
    spin_texture: bool = _about("run bands.x for <sigma_z> at Gamma, K, K' (true/false, not a string)",
                                "write spin_texture: true or false (unquoted)")
    phonon_supercell: int = _bound(ge=1, le=8, why="n x n x 1 supercell of the phonons step; 8 x 8 is 192 atoms, "
                                                   "beyond a node's pw.x")  # phonons step: n x n x 1 supercell
    phonon_displacement: float = _bound(ge=1e-3, le=0.1, unit="A",
                                        why="finite displacement of the phonons step: below 0.001 A force noise "
                                            "dominates, above 0.1 A anharmonicity")  # Angstrom
    # splitting map (soc_map step): N x N grid of the zone, irreducible wedge computed
    map_points: int = _bound(ge=3, le=60, multiple_of=3,
                             why="N x N grid of the soc_map step; a multiple of 3 so that K lies on the grid; 60 is "
                                 "331 wedge points (36: 127)", fix="use e.g. map_points: 36 (paper) or 6 (tests)")
    # Wannier model of the map (wannier_map step): pw.x on the full n x n x 1 grid, Wannier90; 0: off
    map_wannier_grid: int = _bound(ge=0, le=36, why="n x n x 1 grid of the wannier_map step's pw.x run and Wannier "
                                                    "model (0: no model, Fig. 3 from soc_map's points alone); n^2 "
                                                    "k-points without symmetry", fix="use 12 (paper) or 0")
    map_wannier_frozen_ev: float = _bound(ge=0.0, le=5.0, unit="eV",
                                          why="Wannier90's frozen window reaches this far above the conduction "
                                              "band minimum (lowered where a k-point would hold more than 22 bands)")
    # WIEN2k (calculator: wien2k) -- the paper's LAPW settings; ignored by Quantum ESPRESSO
    wien2k_rmt: float = _bound(ge=1.0, le=3.5, unit="bohr", why="muffin-tin radius; M-X bonds (~4.5 bohr) allow "
                                                                "at most ~2.3 each")
    wien2k_rkmax: float = _bound(ge=4.0, le=12.0, why="R_mt K_max; 7 is the paper's, 12 is far past convergence")
    wien2k_lmax: int = _bound(ge=4, le=14, why="l_max inside the spheres; 10 is the paper's and WIEN2k's default")
    wien2k_ecut: float = _bound(ge=-20.0, lt=0.0, unit="Ry", why="lstart core/valence separation: a negative "
                                                                  "energy (-6 Ry is WIEN2k's default)")
    wien2k_ec: float = _bound(gt=0.0, le=0.01, unit="Ry", why="run_lapw -ec energy convergence")
    wien2k_cc: float = _bound(gt=0.0, le=0.1, unit="e", why="run_lapw -cc charge convergence")
    wien2k_fc: float = _bound(gt=0.0, le=10.0, unit="mRy/bohr", why="force convergence of the relaxation")
    wien2k_max_iterations: int = _bound(ge=1, le=1000, why="run_lapw -i")
    wien2k_so_emax: float = _bound(gt=0.0, le=50.0, unit="Ry", why="spin-orbit basis window above E_F")
    wien2k_scan_step: float = _bound(gt=0.0, le=0.1, why="lattice scan step, fraction of a", fix=_WIEN2K_SCAN_FIX)
    wien2k_scan_points: int = _bound(ge=3, le=21, why="lattice scan points (an equation-of-state fit needs >= 3)",
                                     fix=_WIEN2K_SCAN_FIX)
    # Elk (calculator: elk) -- all-electron FP-(L)APW+lo, Hartree/bohr units; ignored by the other codes
    elk_rmt: float = _bound(ge=1.0, le=3.0, unit="bohr", why="muffin-tin radius of every atom (the species files' rmt "
                                                             "is replaced); 2.1 is the paper's, M-X bonds allow ~2.3")
    elk_rgkmax: float = _bound(ge=4.0, le=12.0, why="R_mt times the largest G+k of the APW basis (Elk's rgkmax); "
                                                     "7 is the paper's R_mt K_max")
    elk_lmaxapw: int = _bound(ge=4, le=14, why="l_max of the APW functions; 10 is the paper's")
    elk_gmaxvr: float = _bound(ge=6.0, le=30.0, unit="1/bohr", why="largest G of density and potential (Elk's gmaxvr); "
                                                                   "must exceed 2 rgkmax / R_mt")
    elk_nempty: int = _bound(ge=1, le=64, why="Elk 8's nempty: empty states per atom in the second-variational "
                                              "step (Delta moves by ~2 meV from 8 to 64 for WSe2)")
    elk_epspot: float = _bound(gt=0.0, le=1e-3, why="SCF target: RMS change of the Kohn-Sham potential (Elk's epspot)")
    elk_epsengy: float = _bound(gt=0.0, le=1e-2, unit="Ha", why="SCF target: change of the total energy (epsengy)")
    elk_maxscl: int = _bound(ge=1, le=1000, why="SCF loops at most (Elk's maxscl)")
    elk_epsforce: float = _bound(gt=0.0, le=0.01, unit="Ha/bohr", why="relax: largest force at the end of Elk's "
                                                                     "geometry optimisation (epsforce)")
    elk_scan_step: float = _bound(gt=0.0, le=0.1, why="relax (monolayer a): E(a) scan step, fraction of a")
    elk_scan_points: int = _bound(ge=4, le=21, why="relax (monolayer a): E(a) scan points (a Birch-Murnaghan fit "
                                                   "needs >= 4)")
    elk_relax_kmesh: int | None = _bound(ge=1, le=64, why="relax: n of its n x n x 1 mesh (bulk: n x n x kmesh_bulk_kz; "
                                                         "null: kmesh)")
    elk_relax_height: Literal[ELK_RELAX_HEIGHTS] = _about(
        "relax (monolayer d): forces keeps the d of Elk's geometry optimisation (task 2); energy then fits a "
        "parabola through task-0 total energies E(d) around it at the fitted a (Elk's forces at rgkmax 7 put "
        "WSe2's d 0.05 A below the energy minimum: docs/physics.md)", "use forces or energy")
    elk_height_step: float = _bound(gt=0.0, le=0.1, unit="A", why="relax, elk_relax_height energy: spacing of "
                                                                 "the E(d) points")
    elk_height_epsengy: float = _bound(gt=0.0, le=1e-3, unit="Ha", why="relax, elk_relax_height energy: SCF "
                                       "total-energy target of each E(d) point (their differences are ~1 mHa)")

    @model_validator(mode="wrap")
    @classmethod
    def _named_errors(cls, values: Any, handler: Any) -> Any:
        """pydantic's errors as one InputError naming key, value, allowed range and fix; then the
        rules between the values (:meth:`_check_consistent`)."""
        try:
            preset = handler(values)
        except ValidationError as exc:
            raise _input_error(exc) from None
        preset._check_consistent()
        return preset

    @field_validator("pseudo_family")
    @classmethod
    def _has_recipe_file(cls, family: str) -> str:
        if family not in available_families():
            raise _rule_broken(f"pseudo_family '{family}' has no recipe file in inputs/pseudo_recipes/ "
                               f"(available: {', '.join(available_families())})",
                               "use one of the available families, or add inputs/pseudo_recipes/<name>.yaml",
                               "pseudo_family")
        return family

    @field_validator("element_pseudo_families")
    @classmethod
    def _families_have_the_elements(cls, families: dict[str, str]) -> dict[str, str]:
        for element, family in families.items():
            if family not in available_families():
                raise _rule_broken(f"element_pseudo_families: {element} -> '{family}' has no recipe file in "
                                   f"inputs/pseudo_recipes/ (available: {', '.join(available_families())})",
                                   "use one of the available families for that element", "element_pseudo_families")
            if element not in load_family(family):
                raise _rule_broken(f"element_pseudo_families: family '{family}' has no recipe for '{element}' "
                                   f"(it has {', '.join(sorted(load_family(family)))})",
                                   "use an element symbol the family has (case matters: Se, not se)",
                                   "element_pseudo_families")
        return families

    def _check_consistent(self) -> None:
        """The rules between values: the dual, the relaxation cut-offs, the slab stress ladder."""
        if self.ecutrho <= self.ecutwfc:  # pw.x: 'invalid dual?'
            raise _inconsistent(f"ecutrho ({self.ecutrho} Ry) is not above ecutwfc ({self.ecutwfc} Ry)",
                                "use ecutrho >= 4 x ecutwfc (8 x for PAW/ultrasoft)", "ecutrho", "ecutwfc")
        if (self.relax_ecutwfc is None) != (self.relax_ecutrho is None):
            raise _inconsistent("relax_ecutwfc and relax_ecutrho must be given together",
                                "set both (e.g. 60 and 480 Ry), or both null to relax at ecutwfc/ecutrho",
                                "relax_ecutwfc", "relax_ecutrho")
        if self.relax_ecutwfc is not None and self.relax_ecutrho <= self.relax_ecutwfc:
            raise _inconsistent(f"relax cut-offs {self.relax_ecutwfc}/{self.relax_ecutrho} Ry: need 0 < relax_ecutwfc "
                                "<= relax_ecutrho", "use e.g. 60 and 480 Ry (8 x for PAW)",
                                "relax_ecutwfc", "relax_ecutrho")
        wfc, rho = self.cell_relax_cutoffs()
        top = wfc + self.relax_cutoff_raises * self.relax_cutoff_step
        if self.relax_stress_zz_thr is not None and (top > MAX_ECUTWFC or top * rho / wfc > MAX_ECUTRHO):
            raise _inconsistent(
                f"the slab stress ladder would relax at up to {top:g}/{top * rho / wfc:g} Ry ({wfc:g} Ry + "
                f"{self.relax_cutoff_raises} x relax_cutoff_step {self.relax_cutoff_step:g} Ry), above the "
                f"{MAX_ECUTWFC:g}/{MAX_ECUTRHO:g} Ry limit of ecutwfc/ecutrho",
                "lower relax_cutoff_step or relax_cutoff_raises (or the cut-offs)",
                "relax_cutoff_step", "relax_cutoff_raises")

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


PRESET_KEYS = tuple(f.name for f in dataclasses.fields(Preset))


def _num(x: float) -> str:
    return f"{x:g}"


@cache
def schema() -> dict[str, dict[str, Any]]:
    """The JSON schema of every preset key (type, bounds, enumeration, description, unit, fix),
    as pydantic derives it from the fields: the one place the helpers below read them."""
    return TypeAdapter(Preset).json_schema()["properties"]


def _value_schema(key: str) -> tuple[dict[str, Any], bool]:
    """(the schema of a key's value, whether null is allowed too)."""
    prop = schema()[key]
    options = prop.get("anyOf", [prop])
    values = [o for o in options if o.get("type") != "null"]
    return (values[0] if values else prop), len(values) < len(options)


def allowed(key: str) -> str:
    """The allowed values of preset key ``key`` in words: '10 <= ecutwfc <= 300 Ry', 'one of ...'."""
    value, nullable = _value_schema(key)
    if "enum" in value:
        return "one of " + ", ".join(value["enum"])
    lo = next((f"{_num(value[b])} {op} " for b, op in (("minimum", "<="), ("exclusiveMinimum", "<")) if b in value), "")
    hi = next((f" {op} {_num(value[b])}" for b, op in (("maximum", "<="), ("exclusiveMaximum", "<")) if b in value), "")
    if not (lo or hi):
        return ""
    unit = schema()[key].get("unit", "")
    text = f"{lo}{key}{hi}" + (f" {unit}" if unit else "")
    if "multipleOf" in value:
        text += f", a multiple of {value['multipleOf']}"
    return text + (" (or null)" if nullable else "")


_JSON_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean", "string": "string",
               "object": "mapping of names"}


def type_name(key: str) -> str:
    value, _ = _value_schema(key)
    return _JSON_TYPES.get(value.get("type", ""), value.get("type", "value"))


def bounds_table() -> list[tuple[str, str, str, str]]:
    """(key, type, allowed, why) for every preset key: the user guide's "Validation bounds"."""
    return [(key, type_name(key), allowed(key) or "-", schema()[key].get("description", "")) for key in PRESET_KEYS]


_TYPE_ERRORS = {"int_type": "an integer (not a bool or a float)", "float_type": "a number (not a bool or a string)",
                "bool_type": "true or false (unquoted, not a string)", "string_type": "a string",
                "finite_number": "a finite number (not nan or inf)", "dict_type": "a mapping"}


def _input_error(exc: ValidationError, key: str | None = None) -> InputError:
    """pydantic's errors as one InputError naming each key (``err.keys``), its value, the allowed
    range, why and the fix; ``key``: the key of a single value's errors (:func:`check_value`)."""
    problems, fixes, keys = [], [], []
    for err in exc.errors():
        kind = err.get("type", "")
        if kind == "preset_rule":
            ctx = err["ctx"]
            problems.append(ctx["problem"])
            fixes.append(ctx["fix"])
            keys += [k for k in ctx["keys"].split(",") if k]
            continue
        loc = err.get("loc") or ()
        name = key or (str(loc[0]) if loc else "")
        if name not in schema():
            problems.append(err["msg"])
            continue
        keys.append(name)
        value = err.get("input")
        rng = allowed(name)
        if kind == "missing":
            what = "is missing"
        elif kind in _TYPE_ERRORS:
            what = f"= {value!r} is not {_TYPE_ERRORS[kind]}" + (f" (allowed: {rng})" if rng else "")
        elif kind == "literal_error":
            what = f"= {value!r} is not {rng}"
        elif kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal", "multiple_of"):
            low = kind.startswith("greater") and rng.startswith("0 < ")
            what = (f"must be positive, got {value!r} (allowed: {rng})" if low
                    else f"= {value!r} is outside the allowed range {rng}")
        else:
            what = f"= {value!r}: {err['msg']}" + (f" (allowed: {rng})" if rng else "")
        why = schema()[name].get("description", "")
        problems.append(f"{name} {what}" + (f" -- {why}" if why and kind != "literal_error" else ""))
        fixes.append(schema()[name].get("fix") or (f"set {name} to {rng}" if rng else f"fix {name}"))
    error = InputError("; ".join(problems), "; ".join(dict.fromkeys(fixes)))
    error.keys = list(dict.fromkeys(keys))
    return error


@cache
def _value_adapter(key: str) -> TypeAdapter:
    """A validator of one preset value: the key's type and bounds as declared on its field."""
    info = Preset.__pydantic_fields__[key]
    return TypeAdapter(Annotated[info.annotation, info], config=PRESET_CONFIG)


def check_value(key: str, value: Any) -> None:
    """Refuse ``value`` for preset key ``key`` if it breaks the key's declared type or range
    (a convergence ladder's values, before the study is submitted)."""
    try:
        _value_adapter(key).validate_python(value)
    except ValidationError as exc:
        raise _input_error(exc, key) from None


def available_presets() -> list[str]:
    return sorted(p.stem for p in (inputs_dir() / "presets").glob("*.yaml") if p.stem != "base")


def load_preset(name: str, overrides: Mapping[str, Any] | None = None) -> Preset:
    """base.yaml < <name>.yaml < ``overrides`` (None values are skipped), validated.

    An :class:`InputError` names the bad key(s) (``err.keys``) and where each value came from."""
    if name not in available_presets():
        raise InputError(f"unknown preset '{name}'", f"choose one of {available_presets()}")
    values: dict[str, Any] = {}
    source: dict[str, str] = {}
    for file in ("presets/base.yaml", f"presets/{name}.yaml"):
        data = load_yaml(file) or {}
        if not isinstance(data, Mapping):
            raise InputError(f"inputs/{file} is not a mapping of preset keys", "fix inputs/presets/")
        values.update(data)
        source.update({k: f"inputs/{file}" for k in data})
    values.setdefault("description", "")
    valid = set(PRESET_KEYS)
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputError(f"preset overrides must be a mapping of keys to values, got {overrides!r}",
                         "write them as {kmesh: 9, ecutwfc: 60.0}")
    for key, val in (overrides or {}).items():
        if key not in valid or key == "name":
            err = InputError(f"unknown preset parameter '{key}'", f"valid: {sorted(valid - {'name'})}")
            err.keys = [key]
            raise err
        if val is not None:
            values[key] = val
            source[key] = "override"
    values["name"] = name
    unknown = set(values) - valid
    if unknown:
        raise InputError(f"preset '{name}' has unknown keys {sorted(unknown)}", "fix inputs/presets/")
    try:
        return Preset(**values)
    except InputError as exc:
        keys = getattr(exc, "keys", [])
        files = sorted({source[k] for k in keys if source.get(k, "override") != "override"})
        # a shipped (or edited) preset file is wrong, not the user's override (a rule between an
        # override and a file's value is the override's)
        if files and not any(source.get(k) == "override" for k in keys):
            exc = InputError(f"{exc.problem} (from {', '.join(files)})", exc.remedy)
            exc.keys = keys
        raise exc from None
