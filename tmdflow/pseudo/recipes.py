"""ld1.x pseudopotential recipes kept as data in ``inputs/pseudo_recipes/<family>.yaml``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..data import inputs_dir, load_yaml
from ..errors import InputError, PseudopotentialError

#: rel flag of ld1.x: 1 = scalar-relativistic, 2 = fully relativistic (Dirac, spin-orbit)
REL_SCALAR = 1
REL_FULL = 2


@dataclass(frozen=True)
class Recipe:
    family: str
    kind: str  # "paw" or "nc"
    element: str
    zed: float
    config: str
    inputp: Mapping[str, Any]
    cards: tuple[str, ...]
    test_configs: tuple[str, ...]
    functional: str
    source: str
    max_eigenvalue_error_ry: float = 0.003  # family's transferability tolerance
    # rel=2: each atomic j-splitting (PS vs AE) may miss by max(floor, relative * AE); the floor
    # covers ld1.x's printed resolution (1e-5 Ry = 0.14 meV per eigenvalue) and tiny splittings
    max_spin_orbit_relative_error: float = 0.005
    spin_orbit_error_floor_mev: float = 1.0

    def spin_orbit_tolerance_mev(self, ae_splitting_mev: float) -> float:
        return max(self.spin_orbit_error_floor_mev, self.max_spin_orbit_relative_error * abs(ae_splitting_mev))

    def fingerprint(self, rel: int) -> str:
        """Hash of everything that determines the generated file (data, not the source note)."""
        payload = {
            "zed": self.zed,
            "config": self.config,
            "inputp": dict(sorted(self.inputp.items())),
            "cards": list(self.cards),
            "functional": self.functional,
            "rel": rel,
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def max_radius(self) -> float:
        radii = [float(c.split()[6]) for c in self.cards] + [float(c.split()[5]) for c in self.cards]
        if "rcloc" in self.inputp:
            radii.append(float(self.inputp["rcloc"]))
        return max(radii)


def _fortran(value: Any) -> str:
    if isinstance(value, bool):
        return ".true." if value else ".false."
    if isinstance(value, (int, float)):
        return repr(value)
    return f"'{value}'"


def render_ld1_input(
    recipe: Recipe,
    rel: int,
    upf_name: str,
    test_config: str | None = None,
    logder: Mapping[str, float] | None = None,
    prefix: str = "ld1",
) -> str:
    """The ld1.x input text for generating ``upf_name`` at relativistic level ``rel``."""
    if rel not in (REL_SCALAR, REL_FULL):
        raise InputError(f"rel must be 1 or 2, got {rel}", "use 1 (scalar) or 2 (fully relativistic)")
    inp = [
        " &input",
        f"   title='{recipe.element}',",
        f"   zed={recipe.zed},",
        f"   rel={rel},",
        f"   config='{recipe.config}',",
        "   iswitch=3,",
        f"   dft='{recipe.functional}',",
        f"   prefix='{prefix}',",
    ]
    if logder:
        inp += [f"   {k}={v}," for k, v in logder.items()]
    inp += [" /", " &inputp"]
    if recipe.kind == "paw":
        inp += ["   lpaw=.true.,", "   pseudotype=3,"]
    inp += [f"   file_pseudopw='{upf_name}',", "   author='tmdflow (recipe: see PP_INFO)',"]
    inp += [f"   {k}={_fortran(v)}," for k, v in recipe.inputp.items()]
    inp += [" /", str(len(recipe.cards)), *recipe.cards]
    if test_config:
        inp += [" &test", "   nconf=1,", f"   configts(1)='{test_config}'", " /"]
    return "\n".join(inp) + "\n"


def render_ld1_test_input(recipe: Recipe, rel: int, upf_path: str, test_config: str) -> str:
    """ld1.x input testing an existing UPF file in one configuration (iswitch=2).

    Used for norm-conserving files: ld1.x 6.7's test inside a generation run does not relax
    the NC pseudo-atom (its PS eigenvalues stay at the reference values), while iswitch=2 does.
    PAW files cannot be re-read this way in 6.7 ("unrecognized dft"), so PAW tests are run
    inside generation runs, where they are self-consistent.
    """
    return "\n".join([
        " &input",
        f"   title='{recipe.element}',",
        f"   zed={recipe.zed},",
        f"   rel={rel},",
        f"   config='{recipe.config}',",
        "   iswitch=2,",
        f"   dft='{recipe.functional}',",
        " /",
        " &test",
        f"   file_pseudo='{upf_path}',",
        "   nconf=1,",
        f"   configts(1)='{test_config}'",
        " /",
    ]) + "\n"


def available_families() -> list[str]:
    """Names of the recipe families shipped in ``inputs/pseudo_recipes/``."""
    return sorted(p.stem for p in (inputs_dir() / "pseudo_recipes").glob("*.yaml"))


def load_family(family: str) -> dict[str, Recipe]:
    """All recipes of a family, keyed by element symbol."""
    try:
        data = load_yaml(f"pseudo_recipes/{family}.yaml")
    except InputError:
        raise PseudopotentialError(
            f"unknown pseudopotential family '{family}'",
            f"choose one of {available_families()} (inputs/pseudo_recipes/) or supply --pseudo-dir",
        ) from None
    recipes = {}
    for element, r in data["recipes"].items():
        recipes[element] = Recipe(
            family=data["family"],
            kind=data["kind"],
            element=element,
            zed=float(r["zed"]),
            config=r["config"],
            inputp=dict(r["inputp"]),
            cards=tuple(r["cards"]),
            test_configs=tuple(r.get("test_configs", ())),
            functional=data["functional"],
            source=r["source"],
            max_eigenvalue_error_ry=float(data.get("max_eigenvalue_error_ry", 0.003)),
            max_spin_orbit_relative_error=float(data.get("max_spin_orbit_relative_error", 0.005)),
            spin_orbit_error_floor_mev=float(data.get("spin_orbit_error_floor_mev", 1.0)),
        )
    return recipes
